//! Contacts scored recently, so an outcome that does not repeat its contact can still be recorded in full.
//! Bounded: the oldest entries are evicted first. An outcome reaching a replica that has forgotten (or never saw)
//! its contact must carry the contact.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::modelops::quality::ScoreMemo;
use crate::screening::Contact;

/// A contact scored recently, with what the models and the naive rule said about it (absent when the model
/// failed).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The contact.
    pub contact: Contact,
    /// The scores given.
    pub memo: Option<ScoreMemo>,
}

impl Scored {
    /// The likelihood the caller got, and the model that gave it.
    pub fn likelihood(&self) -> Option<(f64, Arc<str>)> {
        self.memo.as_ref().map(|memo| (memo.champion.likelihood, Arc::clone(&memo.champion.version)))
    }
}

/// A bounded, first-in-first-out map from contact id to contact.
#[derive(Debug)]
pub struct RecentContacts {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    contacts: HashMap<String, Scored>,
    order: VecDeque<String>,
}

impl RecentContacts {
    /// Remembers up to `capacity` contacts (0 remembers none).
    pub fn new(capacity: usize) -> Self {
        RecentContacts { inner: Mutex::new(Inner::default()), capacity }
    }

    /// Remembers a contact, evicting the oldest when full. A contact id seen again keeps its latest contact.
    pub fn remember(&self, contact: Contact, memo: Option<ScoreMemo>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        let contact_id = contact.contact_id.clone();
        if inner.contacts.insert(contact_id.clone(), Scored { contact, memo }).is_some() {
            return;
        }
        inner.order.push_back(contact_id);
        while inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.contacts.remove(&oldest);
            }
        }
    }

    /// The contact with this id, if remembered.
    pub fn get(&self, contact_id: &str) -> Option<Scored> {
        self.inner.lock().contacts.get(contact_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use saring_models::{Band, Channel};

    use super::*;
    use crate::modelops::quality::ModelScore;

    fn contact(id: &str) -> Contact {
        Contact {
            contact_id: id.into(),
            caller: None,
            channel: Channel::Voice,
            received_at_ms: 0,
            region: "dki.jakarta".into(),
            utc_offset_s: 7 * 3600,
            sim_present: true,
            device_id: None,
            location: None,
        }
    }

    #[test]
    fn evicts_the_oldest_first() {
        let recent = RecentContacts::new(2);
        recent.remember(contact("a"), None);
        recent.remember(contact("b"), None);
        recent.remember(contact("a"), None);
        let champion = ModelScore { version: Arc::from("m-1"), likelihood: 0.5, band: Band::Elevated };
        recent.remember(contact("c"), Some(ScoreMemo { champion, challenger: None, naive: 0.0 }));
        assert_eq!(recent.get("c").unwrap().likelihood().unwrap(), (0.5, Arc::from("m-1")));
        assert!(recent.get("a").is_none());
        assert!(recent.get("b").is_some());
        assert!(recent.get("c").is_some());
    }
}
