//! Secrets handed to clients (API keys, session tokens, CSRF tokens, invite codes):
//! generation from the OS-seeded CSPRNG and the SHA-256 digests under which they are stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const API_KEY_PREFIX: &str = "ocaas_";
/// 32 random bytes in unpadded base64url.
const API_KEY_BODY_LEN: usize = 43;
/// How much of a key is kept in clear so users can tell their keys apart.
const DISPLAY_PREFIX_LEN: usize = API_KEY_PREFIX.len() + 6;

pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn new_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", random_token(32))
}

/// Whether `candidate` has the shape of a key this server issues (cheap check before the lookup).
pub fn looks_like_api_key(candidate: &str) -> bool {
    candidate
        .strip_prefix(API_KEY_PREFIX)
        .is_some_and(|body| body.len() == API_KEY_BODY_LEN && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_LEN).collect()
}

pub fn new_session_token() -> String {
    random_token(32)
}

pub fn new_csrf_token() -> String {
    random_token(24)
}

/// Invite codes are typed by people, so they are shorter and use an unambiguous alphabet.
pub fn new_invite_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    let chars: String = raw.iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect();
    format!("{}-{}-{}-{}", &chars[0..4], &chars[4..8], &chars[8..12], &chars[12..16])
}

/// Invite codes compare case-insensitively and ignore surrounding spaces.
pub fn normalize_invite_code(code: &str) -> String {
    code.trim().to_ascii_uppercase()
}

pub fn sha256(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_have_the_documented_shape_and_differ() {
        let a = new_api_key();
        let b = new_api_key();
        assert!(looks_like_api_key(&a), "{a}");
        assert_ne!(a, b);
        assert!(!looks_like_api_key("ocaas_short"));
        assert!(!looks_like_api_key(&a.replace("ocaas_", "other_")));
        assert_eq!(display_prefix(&a).len(), 12);
    }

    #[test]
    fn invite_codes_normalize() {
        let code = new_invite_code();
        assert_eq!(code.len(), 19);
        assert_eq!(normalize_invite_code(&format!("  {} ", code.to_lowercase())), code);
    }

    #[test]
    fn constant_time_eq_compares_content() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
