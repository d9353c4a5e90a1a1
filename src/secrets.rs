//! The server's secret key and what it protects: users' own provider keys are stored sealed
//! (ChaCha20-Poly1305, a fresh random nonce each) and opened only to call the provider. The key
//! comes from `OCAAS_SECRET_KEY` (64 hex digits) or, when unset, from `secret.key` in the data
//! dir, created on first start (mode 0600). Losing it makes stored keys unreadable (users set
//! them again); it never prints.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

const NONCE_BYTES: usize = 12;

#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        SecretKey(key)
    }

    /// 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        let bad = || "OCAAS_SECRET_KEY must be 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`".to_owned();
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        parse_hex32(hex).map(SecretKey).ok_or_else(bad)
    }

    fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The key in `path`, created with a random one if the file does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => SecretKey::from_hex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SecretKey::random();
                write_private(path, format!("{}\n", key.to_hex()).as_bytes())?;
                Ok(key)
            }
            Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        }
    }

    /// nonce || ciphertext (with its tag).
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher.encrypt(Nonce::from_slice(&nonce), plain).expect("ChaCha20-Poly1305 seals any length we store");
        [nonce.as_slice(), &sealed].concat()
    }

    /// `None` when the data was sealed with another key or altered.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        ChaCha20Poly1305::new(Key::from_slice(&self.0)).decrypt(Nonce::from_slice(nonce), body).ok()
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from exactly 64 hex digits; `None` for anything else.
pub fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Creates `path` readable by its owner only, holding `bytes`; an existing file is an error.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_same_key_and_unaltered() {
        let key = SecretKey::random();
        let sealed = key.seal(b"sk-user-123");
        assert!(!sealed.windows(11).any(|w| w == b"sk-user-123"), "not stored in the clear");
        assert_ne!(key.seal(b"sk-user-123"), sealed, "a fresh nonce each time");
        assert_eq!(key.open(&sealed).as_deref(), Some(b"sk-user-123".as_slice()));
        assert_eq!(SecretKey::random().open(&sealed), None);
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&altered), None);
        assert_eq!(key.open(b"short"), None);
    }

    #[test]
    fn the_key_file_is_created_once_and_read_back() {
        let path = std::env::temp_dir().join(format!("ocaas-secret-{}.key", uuid::Uuid::new_v4().simple()));
        let first = SecretKey::load_or_create(&path).unwrap();
        let again = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(first.0, again.0);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, "nope").unwrap();
        assert!(SecretKey::load_or_create(&path).is_err());
        let _ = std::fs::remove_file(path);
        assert!(SecretKey::from_hex(&"ab".repeat(32)).is_ok() && SecretKey::from_hex("zz").is_err());
    }
}
