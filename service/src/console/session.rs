//! Console sessions: a bearer token of the gRPC API is exchanged once, at sign-in, for a random session id in an
//! HttpOnly, SameSite=Strict cookie. Each session has its own CSRF token, which every form and every script
//! request must echo. Sessions live in memory (a restart signs everyone out) and expire after a fixed time.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::auth::Principal;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "saring_session";

/// The language cookie's name.
pub const LANG_COOKIE: &str = "saring_lang";

/// How long a session lasts (one operator shift).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who, with which role.
    pub principal: Principal,
    /// The CSRF token forms and scripts must send back.
    pub csrf: String,
    /// The session's id (its cookie value).
    pub id: String,
    expires: Instant,
}

/// The sessions of this process.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    /// The cases whose evidence each session has read (and the audit log recorded): a reviewer's evidence read is
    /// audited once per case per session, not at every page view.
    reads: Mutex<HashMap<String, HashSet<String>>>,
}

/// 32 random bytes as hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    hex::encode(bytes)
}

impl Sessions {
    /// Starts a session for `principal`; returns its id.
    pub fn start(&self, principal: Principal) -> String {
        let id = random_token();
        let session =
            Session { principal, csrf: random_token(), id: id.clone(), expires: Instant::now() + SESSION_LIFETIME };
        let mut sessions = self.by_id.lock();
        let now = Instant::now();
        sessions.retain(|_, session| session.expires > now);
        self.reads.lock().retain(|id, _| sessions.contains_key(id));
        sessions.insert(id.clone(), session);
        id
    }

    /// Whether the session `id` has read `case_id`'s evidence already (its read is in the audit log).
    pub fn has_read(&self, id: &str, case_id: &str) -> bool {
        self.reads.lock().get(id).is_some_and(|cases| cases.contains(case_id))
    }

    /// Records that the session `id` read `case_id`'s evidence and the read was audited.
    pub fn mark_read(&self, id: &str, case_id: &str) {
        self.reads.lock().entry(id.to_owned()).or_default().insert(case_id.to_owned());
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let sessions = self.by_id.lock();
        sessions.get(id).filter(|session| session.expires > Instant::now()).cloned()
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.by_id.lock().remove(id);
        self.reads.lock().remove(id);
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Compares two secrets in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn sessions_start_read_and_end() {
        let sessions = Sessions::default();
        let principal = Principal { name: "ana".into(), role: Role::Operator };
        let id = sessions.start(principal.clone());
        let session = sessions.get(&id).unwrap();
        assert_eq!(session.principal, principal);
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(session.csrf, id);
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn cookies_and_secrets() {
        assert_eq!(cookie("a=1; saring_session=abc; b=2", SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie("saring_sessionx=abc", SESSION_COOKIE), None);
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }
}
