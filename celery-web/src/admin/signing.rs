//! The admin's secret key: HMAC-SHA256 signatures for session cookies and CSRF tokens.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks short strings with the site's `admin_secret_key` (or a random key).
pub(crate) struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(********)")
    }
}

impl Signer {
    /// A signer with `key`, or with a random key when there is none (then signatures do not
    /// survive a restart and are not shared between processes).
    pub(crate) fn new(key: Option<&str>) -> Signer {
        let key = match key {
            Some(key) => key.as_bytes().to_vec(),
            None => {
                tracing::warn!(
                    "admin_secret_key is not set: admin sessions last until this process \
                     restarts and are not shared with other web processes"
                );
                random_token().into_bytes()
            }
        };
        Signer { key }
    }

    fn mac(&self, purpose: &str, parts: &[&str]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(purpose.as_bytes());
        for part in parts {
            // Lengths first, so ("ab", "c") and ("a", "bc") sign differently.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// The signature of `parts` for `purpose`, as lower-case hex.
    pub(crate) fn sign(&self, purpose: &str, parts: &[&str]) -> String {
        hex(&self.mac(purpose, parts).finalize().into_bytes())
    }

    /// Whether `signature` (hex) signs `parts` for `purpose`; compares in constant time.
    pub(crate) fn verify(&self, purpose: &str, parts: &[&str], signature: &str) -> bool {
        match unhex(signature) {
            Some(bytes) => self.mac(purpose, parts).verify_slice(&bytes).is_ok(),
            None => false,
        }
    }
}

/// 128 random bits from the operating system, as 32 hex digits.
pub(crate) fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_depend_on_key_purpose_and_parts() {
        let signer = Signer::new(Some("k".repeat(32).as_str()));
        let signature = signer.sign("session", &["ann", "100"]);
        assert!(signer.verify("session", &["ann", "100"], &signature));
        assert!(!signer.verify("csrf", &["ann", "100"], &signature));
        assert!(!signer.verify("session", &["ann", "101"], &signature));
        assert!(!signer.verify("session", &["an", "n100"], &signature));
        assert!(!signer.verify("session", &["ann", "100"], "zz"));
        let other = Signer::new(Some("x".repeat(32).as_str()));
        assert!(!other.verify("session", &["ann", "100"], &signature));
    }
}
