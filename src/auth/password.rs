//! Passwords: policy, argon2id hashing and verification, always off the async runtime.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};

use crate::error::{AppError, AppResult, ErrorCode};

pub const MIN_PASSWORD_CHARS: usize = 10;
const MAX_PASSWORD_BYTES: usize = 1024;

/// Rejects passwords too short to resist guessing (and absurdly long ones, which cost CPU).
pub fn check_policy(password: &str) -> AppResult<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AppError::new(ErrorCode::WeakPassword, format!("The password must have at least {MIN_PASSWORD_CHARS} characters.")));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AppError::new(ErrorCode::WeakPassword, "The password is longer than 1024 bytes."));
    }
    if password.chars().all(|c| c == password.chars().next().unwrap_or(' ')) {
        return Err(AppError::new(ErrorCode::WeakPassword, "The password repeats a single character."));
    }
    Ok(())
}

/// At most this many hashes run at once: each takes 19 MiB and a core for a moment, and a
/// flood of sign-ins must queue here rather than grow the server's memory.
static HASHING: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();

/// Sets how many hashes may run at once (the first call wins; default: the CPU count).
pub fn set_concurrency(permits: usize) {
    let _ = HASHING.set(tokio::sync::Semaphore::new(permits.max(1)));
}

async fn hashing_permit() -> tokio::sync::SemaphorePermit<'static> {
    let semaphore = HASHING.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));
    semaphore.acquire().await.expect("the semaphore is never closed")
}

pub async fn hash(password: String) -> AppResult<String> {
    let _permit = hashing_permit().await;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(AppError::from)
}

/// Verifies `password` against `stored`; with no stored hash it still spends the same work,
/// so response time does not tell whether an email is registered.
pub async fn verify(password: String, stored: Option<String>) -> AppResult<bool> {
    let _permit = hashing_permit().await;
    tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let Ok(parsed) = PasswordHash::new(&stored) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
    })
    .await
    .map_err(|e| AppError::Internal(e.into()))
}

/// A real hash of nothing anybody knows, computed once per process.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    Argon2::default().hash_password(b"not a real password", &SaltString::generate(&mut OsRng)).map(|h| h.to_string()).unwrap_or_default()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_only_the_right_password() {
        let stored = hash("correct horse battery".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), Some(stored.clone())).await.unwrap());
        assert!(!verify("wrong horse battery".into(), Some(stored)).await.unwrap());
        assert!(!verify("anything at all".into(), None).await.unwrap());
    }

    #[test]
    fn policy_rejects_short_and_repetitive_passwords() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("aaaaaaaaaaaaaa").is_err());
        assert!(check_policy("a fine passphrase").is_ok());
    }
}
