//! Password hashing with argon2id (RFC 9106's second recommended parameters by default in the
//! crate: 19 MiB, 2 passes), run off the async threads because it is meant to be slow.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::error::ApiError;

/// Shortest password accepted: NIST SP 800-63B's minimum for user-chosen secrets.
pub const MIN_LENGTH: usize = 8;
/// Longest accepted, so one request cannot make the server hash megabytes.
pub const MAX_LENGTH: usize = 256;

pub fn check_strength(password: &str) -> Result<(), ApiError> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(ApiError::bad_request(
            "weak_password",
            format!("the password is shorter than {MIN_LENGTH} characters"),
        ));
    }
    if length > MAX_LENGTH {
        return Err(ApiError::bad_request(
            "invalid_password",
            format!("the password is longer than {MAX_LENGTH} characters"),
        ));
    }
    Ok(())
}

/// Argon2id runs at once, at most one per core: each takes 19 MiB and a core for tens of
/// milliseconds, so a flood of logins queues here instead of exhausting memory and every core.
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
});

pub async fn hash(password: String) -> Result<String, ApiError> {
    let _permit = HASHING.acquire().await.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || {
        let salt =
            SaltString::encode_b64(&super::secret::random_bytes::<16>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let hash =
            Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        Ok::<_, anyhow::Error>(hash.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Whether `password` matches the stored PHC string.
pub async fn verify(password: String, stored: String) -> Result<bool, ApiError> {
    let _permit = HASHING.acquire().await.map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        Ok::<_, anyhow::Error>(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// A hash of a random password, made once per process and verified against when the email is
/// unknown, so that a login's timing (one verification either way) does not tell which
/// addresses have accounts.
pub async fn decoy() -> Result<String, ApiError> {
    static DECOY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DECOY.get_or_try_init(|| hash(super::secret::token(""))).await.cloned()
}
