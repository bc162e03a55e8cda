//! Where a desktop login's tokens are kept between runs, one entry per server: the operating
//! system's keyring (the Secret Service on Linux, the Keychain on macOS, the Credential Manager
//! on Windows, through the `keyring` crate), or, where there is none (a headless server with no
//! Secret Service on its session bus), a JSON file only its owner can read. [`StoreKind`] says
//! which one is in use, so a front end can tell the person where their credentials went.
//!
//! Keyring calls block (D-Bus round trips, or a system prompt), so every operation runs on
//! tokio's blocking pool.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The keyring's service name for Kiln's entries (the Secret Service's `service` attribute; the
/// server's URL is the `username` attribute, so each server has its own entry).
pub const KEYRING_SERVICE: &str = "kiln";

/// The fallback file's name, in the user's configuration folder for Kiln.
const CREDENTIALS_FILE: &str = "credentials.json";

/// What one login to one server leaves behind.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTokens {
    /// The OAuth client the tokens were issued to (a refresh must name it again).
    pub client_id: String,
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token stops working.
    pub expires_at: DateTime<Utc>,
    /// Space-separated scopes granted.
    pub scope: String,
}

impl fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTokens")
            .field("client_id", &self.client_id)
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Which store holds the tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The operating system's keyring.
    Keyring,
    /// A file readable by its owner alone.
    File(PathBuf),
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreKind::Keyring => write!(f, "the system keyring ({})", keyring_name()),
            StoreKind::File(path) => write!(f, "the file {} (readable by you alone)", path.display()),
        }
    }
}

/// The platform's name for its keyring, for messages.
fn keyring_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "Keychain"
    } else if cfg!(target_os = "windows") {
        "Credential Manager"
    } else {
        "Secret Service"
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the system keyring ({name}) failed: {0}", name = keyring_name())]
    Keyring(String),
    #[error("the system keyring ({name}) is not available: {0}", name = keyring_name())]
    NoKeyring(String),
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{} is readable by other users: remove it, or make it private with `chmod 600`", .0.display())]
    Exposed(PathBuf),
    #[error("{} is not a Kiln credentials file: {detail}", .path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("neither XDG_CONFIG_HOME, HOME nor APPDATA is set: no folder for the credentials file")]
    NoConfigDir,
    #[error("the credential store's worker thread failed: {0}")]
    Worker(String),
}

/// The store of login tokens: see the module's documentation.
#[derive(Clone, Debug)]
pub struct TokenStore {
    kind: StoreKind,
    /// Why the keyring was not used, when the file is the fallback.
    fallback_reason: Option<String>,
}

impl TokenStore {
    /// The system keyring when it answers, otherwise the file in [`default_file`], with the
    /// reason kept in [`TokenStore::fallback_reason`].
    pub async fn open() -> Result<TokenStore, StoreError> {
        match TokenStore::keyring().await {
            Ok(store) => Ok(store),
            Err(StoreError::NoKeyring(reason)) => {
                tracing::info!(%reason, "no system keyring: keeping login tokens in a private file");
                Ok(TokenStore { kind: StoreKind::File(default_file()?), fallback_reason: Some(reason) })
            }
            Err(other) => Err(other),
        }
    }

    /// The system keyring, if one answers: on Linux a Secret Service on the session bus with an
    /// unlocked default collection. Probed by reading an entry, so a bus without the service, or
    /// a locked keyring that cannot prompt, counts as none.
    pub async fn keyring() -> Result<TokenStore, StoreError> {
        blocking(probe_keyring).await??;
        Ok(TokenStore { kind: StoreKind::Keyring, fallback_reason: None })
    }

    /// The file store at `path`.
    pub fn file(path: PathBuf) -> TokenStore {
        TokenStore { kind: StoreKind::File(path), fallback_reason: None }
    }

    pub fn kind(&self) -> &StoreKind {
        &self.kind
    }

    /// Why [`TokenStore::open`] fell back to the file.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// The tokens stored for `server`, if any.
    pub async fn load(&self, server: &str) -> Result<Option<StoredTokens>, StoreError> {
        let (kind, server) = (self.kind.clone(), server.to_string());
        blocking(move || match kind {
            StoreKind::Keyring => keyring_load(&server),
            StoreKind::File(path) => Ok(read_file(&path)?.remove(&server)),
        })
        .await?
    }

    /// Stores `tokens` for `server`, replacing what was there.
    pub async fn save(&self, server: &str, tokens: &StoredTokens) -> Result<(), StoreError> {
        let (kind, server, tokens) = (self.kind.clone(), server.to_string(), tokens.clone());
        blocking(move || match kind {
            StoreKind::Keyring => keyring_save(&server, &tokens),
            StoreKind::File(path) => {
                let mut all = read_file(&path)?;
                all.insert(server, tokens);
                write_file(&path, &all)
            }
        })
        .await?
    }

    /// Forgets `server`'s tokens; whether there were any.
    pub async fn delete(&self, server: &str) -> Result<bool, StoreError> {
        let (kind, server) = (self.kind.clone(), server.to_string());
        blocking(move || match kind {
            StoreKind::Keyring => keyring_delete(&server),
            StoreKind::File(path) => {
                let mut all = read_file(&path)?;
                let found = all.remove(&server).is_some();
                if found {
                    write_file(&path, &all)?;
                }
                Ok(found)
            }
        })
        .await?
    }
}

/// Runs a blocking store operation off the async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| StoreError::Worker(e.to_string()))
}

/// The credentials file's default place: `$XDG_CONFIG_HOME/kiln/` or `~/.config/kiln/` on Unix
/// (macOS included: a file is only the fallback there), `%APPDATA%\kiln\` on Windows.
pub fn default_file() -> Result<PathBuf, StoreError> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let config = if cfg!(windows) {
        non_empty("APPDATA")
    } else {
        non_empty("XDG_CONFIG_HOME").or_else(|| non_empty("HOME").map(|home| home.join(".config")))
    };
    Ok(config.ok_or(StoreError::NoConfigDir)?.join("kiln").join(CREDENTIALS_FILE))
}

fn keyring_entry(server: &str) -> Result<keyring::Entry, StoreError> {
    keyring::Entry::new(KEYRING_SERVICE, server).map_err(|e| StoreError::Keyring(e.to_string()))
}

/// Whether the keyring works: the platform store initialised and one read answered.
fn probe_keyring() -> Result<(), StoreError> {
    if let Err(error) = keyring::Entry::store_status() {
        return Err(StoreError::NoKeyring(error.to_string()));
    }
    let entry =
        keyring::Entry::new(KEYRING_SERVICE, "kiln-keyring-probe").map_err(|e| StoreError::NoKeyring(e.to_string()))?;
    match entry.get_password() {
        Ok(_) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(error) => Err(StoreError::NoKeyring(error.to_string())),
    }
}

fn keyring_load(server: &str) -> Result<Option<StoredTokens>, StoreError> {
    match keyring_entry(server)?.get_password() {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            StoreError::Keyring(format!("the entry for {server} is not Kiln's token record ({})", e.classify_name()))
        }),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(error) => Err(StoreError::Keyring(error.to_string())),
    }
}

fn keyring_save(server: &str, tokens: &StoredTokens) -> Result<(), StoreError> {
    let text = serde_json::to_string(tokens).map_err(|e| StoreError::Keyring(e.to_string()))?;
    keyring_entry(server)?.set_password(&text).map_err(|e| StoreError::Keyring(e.to_string()))
}

fn keyring_delete(server: &str) -> Result<bool, StoreError> {
    match keyring_entry(server)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring::Error::NoEntry) => Ok(false),
        Err(error) => Err(StoreError::Keyring(error.to_string())),
    }
}

/// serde_json's error category, which (unlike its message) quotes nothing of the input.
trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "unexpected fields",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

type Servers = BTreeMap<String, StoredTokens>;

/// The file's tokens by server; none when the file does not exist. A file others can read is
/// refused: its tokens may have leaked, and using it would hide that.
fn read_file(path: &Path) -> Result<Servers, StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Servers::new()),
        Err(error) => return Err(io(error)),
    };
    if readable_by_others(path).map_err(io)? {
        return Err(StoreError::Exposed(path.to_path_buf()));
    }
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt { path: path.to_path_buf(), detail: e.classify_name().to_string() })
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 != 0)
}

/// Windows: the file lives in the user's own profile, whose ACL already keeps others out.
#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> std::io::Result<bool> {
    Ok(false)
}

/// Writes `servers` to `path` atomically: a private temporary file beside it, flushed to disk,
/// then renamed over it, so a crash leaves the old file or the new, never half of one, and the
/// secrets are never in a file others can open, even for a moment.
fn write_file(path: &Path, servers: &Servers) -> Result<(), StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().ok_or_else(|| io(std::io::ErrorKind::InvalidInput.into()))?;
    create_private_dir(dir).map_err(io)?;
    let text = serde_json::to_vec_pretty(servers)
        .map_err(|e| StoreError::Corrupt { path: path.to_path_buf(), detail: e.to_string() })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = write_private(&temporary, &text).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        // Best effort: the error below is what counts.
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(io)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(refresh: &str) -> StoredTokens {
        StoredTokens {
            client_id: "kiln-cli".into(),
            access_token: "eyJ.access.secret".into(),
            refresh_token: refresh.into(),
            expires_at: Utc::now(),
            scope: "jobs:read".into(),
        }
    }

    fn scratch() -> PathBuf {
        std::env::temp_dir().join(format!("kiln-token-store-{}", uuid::Uuid::new_v4().simple()))
    }

    #[tokio::test]
    async fn the_file_store_keeps_each_server_privately_and_atomically() {
        let dir = scratch();
        let path = dir.join("nested").join(CREDENTIALS_FILE);
        let store = TokenStore::file(path.clone());
        assert_eq!(store.kind(), &StoreKind::File(path.clone()));
        assert!(store.kind().to_string().contains("readable by you alone"));
        assert!(store.load("https://a.example").await.unwrap().is_none());

        store.save("https://a.example", &tokens("krt_a")).await.unwrap();
        store.save("https://b.example", &tokens("krt_b")).await.unwrap();
        let replaced = tokens("krt_a2");
        store.save("https://a.example", &replaced).await.unwrap();
        assert_eq!(store.load("https://a.example").await.unwrap(), Some(replaced));
        assert_eq!(store.load("https://b.example").await.unwrap().unwrap().refresh_token, "krt_b");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        // No temporary file is left beside it.
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CREDENTIALS_FILE)]);

        assert!(store.delete("https://a.example").await.unwrap());
        assert!(!store.delete("https://a.example").await.unwrap());
        assert!(store.load("https://a.example").await.unwrap().is_none());
        assert_eq!(store.load("https://b.example").await.unwrap().unwrap().refresh_token, "krt_b");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch();
        let path = dir.join(CREDENTIALS_FILE);
        let store = TokenStore::file(path.clone());
        store.save("https://a.example", &tokens("krt_a")).await.unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = store.load("https://a.example").await.unwrap_err();
        assert!(matches!(error, StoreError::Exposed(_)), "{error}");
        assert!(error.to_string().contains("chmod 600"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_corrupt_file_is_named_without_quoting_it() {
        let dir = scratch();
        create_private_dir(&dir).unwrap();
        let path = dir.join(CREDENTIALS_FILE);
        write_private(&path, b"{\"https://a.example\": \"krt_secret").unwrap();
        let error = TokenStore::file(path).load("https://a.example").await.unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(!error.to_string().contains("krt_secret"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tokens_never_show_in_debug() {
        let shown = format!("{:?}", tokens("krt_secret"));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
