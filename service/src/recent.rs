//! Contacts scored recently, so an outcome that does not repeat its contact can still be recorded in full.
//! Bounded: the oldest entries are evicted first. An outcome reaching a replica that has forgotten (or never saw)
//! its contact must carry the contact.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
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

/// A bounded, first-in-first-out map from contact id to contact. Sharded by the id's hash, each shard under its
/// own short lock, so concurrent scores rarely meet; each shard evicts its own oldest entries (so "oldest first"
/// holds per shard, and the whole stays within its capacity). Remembering a contact moves it in: no copy of the id.
#[derive(Debug)]
pub struct RecentContacts {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    per_shard: usize,
}

/// One shard: contacts by their id's hash (the id itself is compared on reading, so two ids with one hash are
/// never confused: the later simply replaces the earlier), and the hashes in the order they came.
#[derive(Debug, Default)]
struct Shard {
    contacts: HashMap<u64, Scored>,
    order: VecDeque<u64>,
}

/// Below this capacity the map is one shard (exact first-in-first-out); above it, [`SHARDS`] shards.
const SHARDED_FROM: usize = 4096;
const SHARDS: usize = 16;

impl RecentContacts {
    /// Remembers up to `capacity` contacts (0 remembers none).
    pub fn new(capacity: usize) -> Self {
        let shards = if capacity >= SHARDED_FROM { SHARDS } else { 1 };
        RecentContacts {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            per_shard: capacity / shards,
        }
    }

    fn shard(&self, contact_id: &str) -> (u64, &Mutex<Shard>) {
        let hash = self.hasher.hash_one(contact_id);
        (hash, &self.shards[(hash % self.shards.len() as u64) as usize])
    }

    /// Remembers a contact, evicting the oldest of its shard when full. A contact id seen again keeps its latest
    /// contact.
    pub fn remember(&self, contact: Contact, memo: Option<ScoreMemo>) {
        if self.per_shard == 0 {
            return;
        }
        let (hash, shard) = self.shard(&contact.contact_id);
        let mut shard = shard.lock();
        if shard.contacts.insert(hash, Scored { contact, memo }).is_some() {
            return;
        }
        shard.order.push_back(hash);
        while shard.order.len() > self.per_shard {
            if let Some(oldest) = shard.order.pop_front() {
                shard.contacts.remove(&oldest);
            }
        }
    }

    /// The contact with this id, if remembered.
    pub fn get(&self, contact_id: &str) -> Option<Scored> {
        let (hash, shard) = self.shard(contact_id);
        let shard = shard.lock();
        shard.contacts.get(&hash).filter(|scored| scored.contact.contact_id == contact_id).cloned()
    }

    /// Forgets every contact from `number` or from `device_id` (their data were erased); how many went.
    pub fn forget_caller(&self, number: Option<&str>, device_id: Option<&str>) -> usize {
        let mut forgotten = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let before = shard.contacts.len();
            shard.contacts.retain(|_, scored| {
                let contact = &scored.contact;
                !(number.is_some() && contact.caller.as_deref() == number
                    || device_id.is_some() && contact.device_id.as_deref() == device_id)
            });
            if shard.contacts.len() != before {
                forgotten += before - shard.contacts.len();
                let Shard { contacts, order } = &mut *shard;
                order.retain(|hash| contacts.contains_key(hash));
            }
        }
        forgotten
    }

    /// Forgets every contact whose number or device id `named` picks (a notice of an erasure another replica
    /// served); how many went. The numbers and device ids are copied out under each shard's lock and matched
    /// outside it (the matching hashes them), so scoring never waits on it.
    pub fn forget_named(&self, named: impl Fn(Option<&str>, Option<&str>) -> bool) -> usize {
        let mut forgotten = 0;
        for shard in self.shards.iter() {
            let held: Vec<(u64, Option<String>, Option<String>)> = shard
                .lock()
                .contacts
                .iter()
                .map(|(hash, scored)| (*hash, scored.contact.caller.clone(), scored.contact.device_id.clone()))
                .collect();
            let gone: Vec<u64> = held
                .into_iter()
                .filter(|(_, number, device_id)| named(number.as_deref(), device_id.as_deref()))
                .map(|(hash, ..)| hash)
                .collect();
            if gone.is_empty() {
                continue;
            }
            let mut shard = shard.lock();
            let before = shard.contacts.len();
            for hash in &gone {
                shard.contacts.remove(hash);
            }
            forgotten += before - shard.contacts.len();
            let Shard { contacts, order } = &mut *shard;
            order.retain(|hash| contacts.contains_key(hash));
        }
        forgotten
    }

    /// How many contacts are remembered.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().contacts.len()).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    #[test]
    fn a_sharded_map_stays_within_its_capacity_and_finds_what_it_keeps() {
        let recent = RecentContacts::new(SHARDED_FROM);
        for index in 0..3 * SHARDED_FROM {
            recent.remember(contact(&format!("c-{index}")), None);
        }
        assert!(recent.len() <= SHARDED_FROM, "{} kept", recent.len());
        assert!(recent.len() > SHARDED_FROM / 2, "{} kept", recent.len());
        // The newest are kept in every shard; the first ones are long evicted.
        let last = format!("c-{}", 3 * SHARDED_FROM - 1);
        assert_eq!(recent.get(&last).unwrap().contact.contact_id, last);
        assert!(recent.get("c-0").is_none());
        assert!(recent.get("never-scored").is_none());
    }
}
