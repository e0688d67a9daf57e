//! The small vocabulary every part of saring shares: channels and dispositions.

use serde::{Deserialize, Serialize};

/// The channel a contact arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A voice call.
    Voice,
    /// A WhatsApp message or call.
    Whatsapp,
    /// An SMS.
    Sms,
    /// The police app or a panic button.
    App,
}

impl Channel {
    /// All channels, in feature order.
    pub const ALL: [Channel; 4] = [Channel::Voice, Channel::Whatsapp, Channel::Sms, Channel::App];

    /// The lowercase name used in the event log.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Whatsapp => "whatsapp",
            Channel::Sms => "sms",
            Channel::App => "app",
        }
    }

    /// The channel with this lowercase name.
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|channel| channel.as_str() == name)
    }
}

/// An operator's conclusion about a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// A real emergency.
    GenuineEmergency,
    /// A real request that is not an emergency.
    NonEmergency,
    /// A deliberate prank.
    Prank,
    /// Nobody spoke. Never misuse: a silent caller may be in danger.
    Silent,
    /// The caller abused the operator.
    Abusive,
    /// A pocket dial or other accident. Never misuse.
    Accidental,
    /// A test call.
    Test,
    /// No conclusion (unanswered, or the operator could not tell).
    Unknown,
}

impl Disposition {
    /// All dispositions, in history-counter order.
    pub const ALL: [Disposition; 8] = [
        Disposition::GenuineEmergency,
        Disposition::NonEmergency,
        Disposition::Prank,
        Disposition::Silent,
        Disposition::Abusive,
        Disposition::Accidental,
        Disposition::Test,
        Disposition::Unknown,
    ];

    /// Deliberate misuse: the model's positive label and what the escalation ladder counts.
    pub fn is_misuse(self) -> bool {
        matches!(self, Disposition::Prank | Disposition::Abusive)
    }

    /// Whether the disposition is a label at all (UNKNOWN is not: it is left out of training and evaluation).
    pub fn is_labelled(self) -> bool {
        self != Disposition::Unknown
    }

    /// A real need for police help.
    pub fn is_genuine(self) -> bool {
        matches!(self, Disposition::GenuineEmergency | Disposition::NonEmergency)
    }

    /// The position of this disposition in [`Disposition::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lowercase name used in the event log.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::GenuineEmergency => "genuine_emergency",
            Disposition::NonEmergency => "non_emergency",
            Disposition::Prank => "prank",
            Disposition::Silent => "silent",
            Disposition::Abusive => "abusive",
            Disposition::Accidental => "accidental",
            Disposition::Test => "test",
            Disposition::Unknown => "unknown",
        }
    }

    /// The disposition with this lowercase name.
    pub fn from_name(name: &str) -> Option<Disposition> {
        Disposition::ALL.into_iter().find(|disposition| disposition.as_str() == name)
    }
}
