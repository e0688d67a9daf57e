//! Personal data: numbers and device ids are never stored or logged raw. Histories are keyed by
//! HMAC-SHA256(secret, kind || value), with a different kind for numbers and devices.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A history key: the keyed hash of a normalised number or a device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HistoryKey(pub [u8; 32]);

impl HistoryKey {
    /// Lowercase hex, for Redis keys and logs that must correlate without revealing the number.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Computes history keys with the configured secret.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
    /// Earlier secrets' hashers, newest first, while a rotation is under way (`privacy.previous_hash_secrets`):
    /// histories are read under each and written under the current one only.
    previous: Vec<KeyHasher>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("KeyHasher(..)")
    }
}

impl KeyHasher {
    /// A hasher for `secret` (any length; at least 32 bytes is recommended).
    pub fn new(secret: &[u8]) -> Self {
        KeyHasher {
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length"),
            previous: Vec::new(),
        }
    }

    /// This hasher, also reading under the earlier `secrets` (newest first).
    pub fn with_previous<S: AsRef<[u8]>>(mut self, secrets: &[S]) -> Self {
        self.previous = secrets.iter().map(|secret| KeyHasher::new(secret.as_ref())).collect();
        self
    }

    /// Whether a rotation is under way (earlier secrets are configured).
    pub fn rotating(&self) -> bool {
        !self.previous.is_empty()
    }

    /// The keys of a normalised number under the earlier secrets, newest first (none outside a rotation).
    pub fn previous_numbers(&self, e164: &str) -> Vec<HistoryKey> {
        self.previous.iter().map(|hasher| hasher.number(e164)).collect()
    }

    /// The keys of a device id under the earlier secrets, newest first.
    pub fn previous_devices(&self, device_id: &str) -> Vec<HistoryKey> {
        self.previous.iter().map(|hasher| hasher.device(device_id)).collect()
    }

    fn key(&self, kind: &[u8], value: &str) -> HistoryKey {
        let mut mac = self.mac.clone();
        mac.update(kind);
        mac.update(value.as_bytes());
        HistoryKey(mac.finalize().into_bytes().into())
    }

    /// The key of a normalised (E.164) number.
    pub fn number(&self, e164: &str) -> HistoryKey {
        self.key(b"number:", e164)
    }

    /// The key of a device id.
    pub fn device(&self, device_id: &str) -> HistoryKey {
        self.key(b"device:", device_id)
    }

    /// How an erasure notice names the history key `key` (`crate::notices`): HMAC(secret, "erasure-notice:" ||
    /// key), so the case database that carries notices to the other replicas never holds an erased history's key.
    pub fn notice_digest(&self, key: &HistoryKey) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(b"erasure-notice:");
        mac.update(&key.0);
        mac.finalize().into_bytes().into()
    }

    /// The digests of `key` under the current secret and every earlier one: a replica still on the earlier secret
    /// during a rotation's rollout names keys as that one does.
    pub fn notice_digests(&self, key: &HistoryKey) -> impl Iterator<Item = [u8; 32]> + '_ {
        let key = *key;
        std::iter::once(self.notice_digest(&key))
            .chain(self.previous.iter().map(move |hasher| hasher.notice_digest(&key)))
    }
}

/// The history keys erasure notices name, as a replica matches them against what it alone holds: a key is named
/// when its digest under any configured secret is one of the notices'.
#[derive(Debug, Clone)]
pub struct NamedKeys {
    hasher: KeyHasher,
    digests: std::collections::HashSet<[u8; 32]>,
}

impl NamedKeys {
    /// The keys named by `digests` (computed by [`KeyHasher::notice_digest`]), matched with `hasher`.
    pub fn new(hasher: KeyHasher, digests: impl IntoIterator<Item = [u8; 32]>) -> Self {
        NamedKeys { hasher, digests: digests.into_iter().collect() }
    }

    /// Whether a notice names `key`.
    pub fn names(&self, key: &HistoryKey) -> bool {
        !self.digests.is_empty() && self.hasher.notice_digests(key).any(|digest| self.digests.contains(&digest))
    }

    /// Whether a notice names the history key written as `hex` (a journal's or a capture file's reference).
    pub fn names_hex(&self, hex: &str) -> bool {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex, &mut bytes).is_ok() && self.names(&HistoryKey(bytes))
    }

    /// Whether no key is named.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_secret_kind_and_value() {
        let hasher = KeyHasher::new(b"secret-one");
        assert_eq!(hasher.number("+6281234567890"), hasher.number("+6281234567890"));
        assert_ne!(hasher.number("+6281234567890"), hasher.device("+6281234567890"));
        assert_ne!(hasher.number("+6281234567890"), KeyHasher::new(b"secret-two").number("+6281234567890"));
        assert!(!hasher.number("+6281234567890").to_hex().contains("81234567890"));
    }

    #[test]
    fn notices_name_keys_under_every_configured_secret_and_never_hold_them() {
        let old = KeyHasher::new(b"secret-one");
        let rotating = KeyHasher::new(b"secret-two").with_previous(&[b"secret-one"]);
        let (erased, kept) = (old.number("+6281234567890"), old.number("+6281234567891"));
        // Issued by a replica still on the old secret, matched by one already rotating, and the other way round.
        let issued = NamedKeys::new(rotating.clone(), [old.notice_digest(&erased)]);
        assert!(issued.names(&erased) && issued.names_hex(&erased.to_hex()));
        assert!(!issued.names(&kept) && !issued.names_hex(&kept.to_hex()) && !issued.names_hex("not hex"));
        let reverse = NamedKeys::new(old.clone(), rotating.notice_digests(&erased));
        assert!(reverse.names(&erased) && !reverse.names(&kept));
        assert_ne!(old.notice_digest(&erased), erased.0, "a notice never holds the key itself");
        assert!(!NamedKeys::new(old, []).names(&erased));
    }
}
