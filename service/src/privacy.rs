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
}
