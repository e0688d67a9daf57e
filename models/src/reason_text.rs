//! What a reason says, as data and as words: the [`Fact`] a reason states about a contact (a form and a number),
//! its sentence in Bahasa Indonesia or English, and the two rules an operator's screen applies — whether the reason
//! moved the score materially ([`is_material`]) and whether it is routine, saying only that something unusual did
//! not happen ([`is_routine`]).
//!
//! A client that wants its own wording reads the reason's code with its [`Form`] and value (gRPC carries both)
//! and never parses a sentence. Allocation: [`fact`] allocates nothing; only [`sentence_in`] builds a `String`.

use crate::features::FeatureVector;
use crate::reasons::REASONS;

/// The language of a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// Bahasa Indonesia, the operators' language.
    Indonesian,
    /// English.
    English,
}

impl Language {
    /// Both languages.
    pub const ALL: [Language; 2] = [Language::Indonesian, Language::English];
}

/// The form of a reason's sentence: which of the code's sentences applies, and the unit of its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// The property the code names holds ("sim_less": no SIM card; "night": at night; "withheld": withheld).
    Yes,
    /// It does not hold ("the number is shown", "arrived on a weekday", "no device id", "no location was sent").
    No,
    /// There is nothing earlier to speak of: the first contact from this number or device, or no earlier contact.
    First,
    /// The local hour of arrival, 0..23.
    Hour,
    /// A count of contacts, decayed (a contact a half-life ago counts one half).
    Count,
    /// A share of recent contacts, in percent, 0..100.
    Percent,
    /// A duration in seconds.
    Seconds,
    /// A location's accuracy radius in metres.
    Metres,
}

impl Form {
    /// Every form.
    pub const ALL: [Form; 8] =
        [Form::Yes, Form::No, Form::First, Form::Hour, Form::Count, Form::Percent, Form::Seconds, Form::Metres];

    /// The lowercase name (as in the proto's `REASON_FORM_*`, lowercased).
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Yes => "yes",
            Form::No => "no",
            Form::First => "first",
            Form::Hour => "hour",
            Form::Count => "count",
            Form::Percent => "percent",
            Form::Seconds => "seconds",
            Form::Metres => "metres",
        }
    }
}

/// What a reason states about one contact: its form and the number in it (0 for the forms without one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fact {
    /// The form.
    pub form: Form,
    /// The number, in the unit the form names.
    pub value: f64,
}

impl Fact {
    const fn of(form: Form) -> Fact {
        Fact { form, value: 0.0 }
    }

    const fn number(form: Form, value: f64) -> Fact {
        Fact { form, value }
    }
}

/// A reason moved the score materially when its contribution is at least this share of all reasons'
/// contributions taken in absolute value (the whole distance the features moved the score from the model's
/// base). A share, not a fixed amount, so that it means the same for log-odds (logistic, boosted) and vote-share
/// (forest) models. At 10% a contact has at most ten material reasons, usually two to four.
pub const MATERIAL_SHARE: f64 = 0.10;

/// Whether a reason with `contribution` moved the score materially, where `total_abs` is the sum of the absolute
/// contributions of every reason of the contact (see [`MATERIAL_SHARE`]). A zero contribution never does.
pub fn is_material(contribution: f64, total_abs: f64) -> bool {
    contribution != 0.0 && total_abs > 0.0 && contribution.abs() >= MATERIAL_SHARE * total_abs
}

const CALLER_KNOWN: usize = 13;
const CALLER_CONTACTS_30D: usize = 16;
const DEVICE_CONTACTS_30D: usize = 28;
const HAS_LOCATION: usize = 11;

/// The fact reason `reason_index` (into [`REASONS`]) states about a contact with `features`. Reasons folded by
/// [`crate::reasons::operator_reasons`] (no history) read as the absence of history: `withheld` Yes, `has_device`
/// No, `caller_known` First, `has_device` First for a device without history.
pub fn fact(reason_index: usize, features: &FeatureVector) -> Fact {
    let reason = &REASONS[reason_index];
    let value = features[reason.features[0]];
    let flag = if value >= 0.5 { Fact::of(Form::Yes) } else { Fact::of(Form::No) };
    let count = value.exp_m1().max(0.0);
    let caller_known = features[CALLER_KNOWN] >= 0.5;
    let device_contacts = features[DEVICE_CONTACTS_30D].exp_m1();
    let percent = |contacts_feature: usize| {
        let contacts = features[contacts_feature].exp_m1();
        // Shares are smoothed as `amount / (contacts + 1)`; the sentence states `amount / contacts`.
        let share = if contacts > 0.0 { value * (contacts + 1.0) / contacts } else { 0.0 };
        Fact::number(Form::Percent, (share * 100.0).clamp(0.0, 100.0))
    };
    let since = |known: bool| if known { Fact::number(Form::Seconds, count) } else { Fact::of(Form::First) };
    match reason.code {
        "time_of_day" => {
            let angle = features[4].atan2(features[5]).rem_euclid(std::f64::consts::TAU);
            Fact::number(Form::Hour, f64::from((angle / std::f64::consts::TAU * 24.0).floor() as u32 % 24))
        }
        "has_device" if value >= 0.5 && device_contacts < 0.5 => Fact::of(Form::First),
        "location_accuracy_log" if features[HAS_LOCATION] < 0.5 => Fact::of(Form::No),
        "location_accuracy_log" => Fact::number(Form::Metres, count),
        "caller_known" if !caller_known => Fact::of(Form::First),
        "caller_misuse_share_30d"
        | "caller_short_share_30d"
        | "caller_unanswered_share_30d"
        | "caller_night_share_30d" => percent(CALLER_CONTACTS_30D),
        "device_misuse_share_30d" => percent(DEVICE_CONTACTS_30D),
        "caller_log_seconds_since_last" => since(caller_known),
        "device_log_seconds_since_last" => since(device_contacts >= 0.5),
        "caller_log_age_days" => Fact::number(Form::Seconds, count * 86_400.0),
        code if code.contains("_contacts_") || code.contains("_misuse_") || code.ends_with("_30d") => {
            Fact::number(Form::Count, count)
        }
        _ => flag,
    }
}

/// Whether a reason is routine for an operator: it says only that something unusual did not happen — "the
/// number is shown", "arrived on a weekday", "no device id", "no location was sent", "not an app report" (every
/// NO form) — or that the device is identified. An operator's screen leaves these out; the gRPC reply keeps them.
/// The hour and the channel are not routine: the row shows them, but not that they moved the score.
pub fn is_routine(reason_index: usize, fact: Fact) -> bool {
    fact.form == Form::No || (REASONS[reason_index].code == "has_device" && fact.form == Form::Yes)
}

/// "no contacts", "1 contact", "about 7 contacts" (Indonesian nouns take no plural).
fn counted(language: Language, count: f64, singular: &str, plural: &str) -> String {
    match language {
        Language::English if count < 0.5 => format!("no {plural}"),
        Language::English if count < 1.5 => format!("1 {singular}"),
        Language::English => format!("about {count:.0} {plural}"),
        Language::Indonesian if count < 0.5 => format!("tidak ada {singular}"),
        Language::Indonesian if count < 1.5 => format!("1 {singular}"),
        Language::Indonesian => format!("sekitar {count:.0} {singular}"),
    }
}

fn duration_words(language: Language, seconds: f64) -> String {
    let (amount, english, indonesian) = match seconds {
        s if s < 120.0 => (s, "seconds", "detik"),
        s if s < 7_200.0 => (s / 60.0, "minutes", "menit"),
        s if s < 172_800.0 => (s / 3_600.0, "hours", "jam"),
        s => (s / 86_400.0, "days", "hari"),
    };
    match language {
        Language::English => format!("{amount:.0} {english}"),
        Language::Indonesian => format!("{amount:.0} {indonesian}"),
    }
}

/// The sentence of reason `reason_index` stating `fact`, in `language`.
pub fn sentence_in(language: Language, reason_index: usize, fact: Fact) -> String {
    let code = REASONS[reason_index].code;
    let en = language == Language::English;
    let pick = |english: &str, indonesian: &str| if en { english } else { indonesian }.to_owned();
    let yes = fact.form == Form::Yes;
    let whose = |code: &str| if code.starts_with("device_") { ("device", "perangkat") } else { ("number", "nomor") };
    match code {
        "channel_voice" if yes => pick("a voice call", "panggilan suara"),
        "channel_voice" => pick("not a voice call", "bukan panggilan suara"),
        "channel_whatsapp" if yes => pick("a WhatsApp contact", "kontak WhatsApp"),
        "channel_whatsapp" => pick("not a WhatsApp contact", "bukan kontak WhatsApp"),
        "channel_sms" if yes => pick("an SMS", "SMS"),
        "channel_sms" => pick("not an SMS", "bukan SMS"),
        "channel_app" if yes => pick("a report from the police app", "laporan dari aplikasi polisi"),
        "channel_app" => pick("not an app report", "bukan laporan aplikasi"),
        "time_of_day" => {
            let hour = fact.value as u32;
            if en {
                format!("arrived at {hour:02}:00-{hour:02}:59 local time")
            } else {
                format!("masuk pukul {hour:02}.00-{hour:02}.59 waktu setempat")
            }
        }
        "night" if yes => {
            pick("arrived at night (22:00-06:00 local time)", "masuk malam hari (22.00-06.00 waktu setempat)")
        }
        "night" => pick("arrived in the daytime", "masuk siang hari"),
        "weekend" if yes => pick("arrived on a weekend", "masuk pada akhir pekan"),
        "weekend" => pick("arrived on a weekday", "masuk pada hari kerja"),
        "withheld" if yes => pick(
            "the number is withheld, so there is no caller history",
            "nomor disembunyikan, jadi tidak ada riwayat penelepon",
        ),
        "withheld" => pick("the number is shown", "nomor ditampilkan"),
        "sim_less" if yes => pick("no SIM card in the handset", "ponsel tanpa kartu SIM"),
        "sim_less" => pick("the handset has a SIM card", "ponsel memiliki kartu SIM"),
        "has_device" => match fact.form {
            Form::First => pick("first contact from this device", "kontak pertama dari perangkat ini"),
            Form::No => pick(
                "no device id, so there is no device history",
                "tanpa ID perangkat, jadi tidak ada riwayat perangkat",
            ),
            _ => pick("the device is identified", "perangkat dikenali"),
        },
        "has_location" if yes => pick("a location was sent", "lokasi dikirim"),
        "has_location" | "location_accuracy_log" if fact.form == Form::No => {
            pick("no location was sent", "lokasi tidak dikirim")
        }
        "location_accuracy_log" if en => format!("location accurate to {:.0} m", fact.value),
        "location_accuracy_log" => format!("lokasi akurat hingga {:.0} m", fact.value),
        "caller_known" if fact.form == Form::First => {
            pick("first contact from this number", "kontak pertama dari nomor ini")
        }
        "caller_known" => pick("this number has contacted 110 before", "nomor ini pernah menghubungi 110"),
        "caller_log_seconds_since_last" | "device_log_seconds_since_last" => {
            let (english, indonesian) = whose(code);
            match (fact.form, en) {
                (Form::First, true) => format!("no earlier contact from this {english}"),
                (Form::First, false) => format!("belum ada kontak sebelumnya dari {indonesian} ini"),
                (_, true) => format!("last contact from this {english} {} ago", duration_words(language, fact.value)),
                (_, false) => {
                    format!("kontak terakhir dari {indonesian} ini {} lalu", duration_words(language, fact.value))
                }
            }
        }
        "caller_log_age_days" if en => {
            format!("this number was first seen {} ago", duration_words(language, fact.value))
        }
        "caller_log_age_days" => {
            format!("nomor ini pertama kali tercatat {} lalu", duration_words(language, fact.value))
        }
        _ if fact.form == Form::Percent => {
            let (english, indonesian) = whose(code);
            let percent = fact.value;
            let (what_en, what_id) = match code {
                "caller_short_share_30d" => ("lasted under 10 seconds", "berlangsung kurang dari 10 detik"),
                "caller_unanswered_share_30d" => ("were not answered", "tidak dijawab"),
                "caller_night_share_30d" => ("came at night", "masuk malam hari"),
                _ => ("were pranks or abuse", "berupa iseng atau kasar"),
            };
            if en {
                format!("{percent:.0}% of this {english}'s recent contacts {what_en}")
            } else {
                format!("{percent:.0}% kontak terakhir dari {indonesian} ini {what_id}")
            }
        }
        _ if fact.form == Form::Count => {
            let (english, indonesian) = whose(code);
            let (singular, plural, kind) = if code.contains("misuse") {
                ("prank or abusive contact", "prank or abusive contacts", "kontak iseng atau kasar")
            } else if code.contains("genuine") {
                ("genuine contact", "genuine contacts", "kontak sungguhan")
            } else if code.contains("silent_accidental") {
                ("silent or accidental contact", "silent or accidental contacts", "kontak diam atau tak sengaja")
            } else {
                ("contact", "contacts", "kontak")
            };
            let (when_en, when_id) = if code.ends_with("_1h") {
                ("hour", "satu jam")
            } else if code.ends_with("_1d") {
                ("day", "sehari")
            } else {
                ("month", "sebulan")
            };
            if en {
                format!("{} from this {english} in the last {when_en}", counted(language, fact.value, singular, plural))
            } else {
                format!("{} dari {indonesian} ini dalam {when_id} terakhir", counted(language, fact.value, kind, kind))
            }
        }
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{feature_index, FEATURES};

    fn reason_of(code: &str) -> usize {
        REASONS.iter().position(|reason| reason.code == code).unwrap()
    }

    /// Every reason, in every form it can take, has a sentence of its own in both languages, and the two differ.
    #[test]
    fn every_reason_reads_in_both_languages() {
        let mut contexts = Vec::new();
        for known in [0.0, 1.0] {
            for flags in [0.0, 1.0] {
                let mut features = [flags; FEATURES.len()];
                features[CALLER_KNOWN] = known;
                features[feature_index("caller_contacts_30d").unwrap()] = 4f64.ln() * known;
                features[DEVICE_CONTACTS_30D] = 3f64.ln() * known;
                features[feature_index("caller_log_seconds_since_last").unwrap()] = 3_600f64.ln_1p();
                features[feature_index("hour_sin").unwrap()] = 0.5;
                features[feature_index("hour_cos").unwrap()] = 0.5;
                contexts.push(features);
            }
        }
        let mut forms_seen = std::collections::HashSet::new();
        for features in &contexts {
            for (index, reason) in REASONS.iter().enumerate() {
                let fact = fact(index, features);
                forms_seen.insert(fact.form);
                let english = sentence_in(Language::English, index, fact);
                let indonesian = sentence_in(Language::Indonesian, index, fact);
                let code = reason.code;
                assert_ne!(english, code.replace('_', " "), "{code}: no English sentence for {fact:?}");
                assert_ne!(indonesian, code.replace('_', " "), "{code}: no Indonesian sentence for {fact:?}");
                assert_ne!(english, indonesian, "{code}: the same words in both languages for {fact:?}");
            }
        }
        for form in Form::ALL {
            assert!(forms_seen.contains(&form), "{form:?} never produced");
        }
    }

    #[test]
    fn facts_carry_the_numbers_of_the_sentence() {
        let mut features = [0.0; FEATURES.len()];
        features[CALLER_KNOWN] = 1.0;
        features[feature_index("caller_contacts_1h").unwrap()] = 8f64.ln();
        features[feature_index("caller_contacts_30d").unwrap()] = 11f64.ln();
        features[feature_index("caller_misuse_share_30d").unwrap()] = 5.0 / 11.0;
        let contacts = fact(reason_of("caller_contacts_1h"), &features);
        assert_eq!(contacts.form, Form::Count);
        assert!((contacts.value - 7.0).abs() < 1e-9);
        let share = fact(reason_of("caller_misuse_share_30d"), &features);
        assert_eq!(share.form, Form::Percent);
        assert!((share.value - 50.0).abs() < 1e-9);
        assert_eq!(
            sentence_in(Language::Indonesian, reason_of("caller_contacts_1h"), contacts),
            "sekitar 7 kontak dari nomor ini dalam satu jam terakhir"
        );
        assert_eq!(
            sentence_in(Language::English, reason_of("caller_misuse_share_30d"), share),
            "50% of this number's recent contacts were pranks or abuse"
        );
    }

    /// The materiality rule: 10% of the whole absolute movement, whatever the model's scale.
    #[test]
    fn a_reason_is_material_at_a_tenth_of_the_whole_movement() {
        assert!(is_material(0.301, 3.0));
        assert!(is_material(-0.301, 3.0), "either direction");
        assert!(!is_material(0.29, 3.0));
        assert!(is_material(0.003, 0.03), "the same share on a vote-share scale");
        assert!(!is_material(0.0, 0.0));
        assert!(!is_material(0.0, 1.0));
    }

    #[test]
    fn routine_reasons_say_that_something_unusual_did_not_happen() {
        let mut features = [0.0; FEATURES.len()];
        features[feature_index("channel_voice").unwrap()] = 1.0;
        for code in ["channel_sms", "withheld", "weekend", "night", "sim_less", "has_device", "has_location"] {
            let index = reason_of(code);
            assert!(is_routine(index, fact(index, &features)), "{code}");
        }
        for code in ["channel_voice", "time_of_day", "caller_known", "caller_contacts_1h", "caller_misuse_30d"] {
            let index = reason_of(code);
            assert!(!is_routine(index, fact(index, &features)), "{code}");
        }
        features[feature_index("withheld").unwrap()] = 1.0;
        features[feature_index("sim_less").unwrap()] = 1.0;
        features[feature_index("night").unwrap()] = 1.0;
        for code in ["withheld", "sim_less", "night"] {
            let index = reason_of(code);
            assert!(!is_routine(index, fact(index, &features)), "{code} when it holds");
        }
        features[feature_index("has_device").unwrap()] = 1.0;
        let device = reason_of("has_device");
        assert_eq!(fact(device, &features).form, Form::First);
        assert!(!is_routine(device, fact(device, &features)), "a first contact from a device is news");
    }
}
