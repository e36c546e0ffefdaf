//! The app developer's keyring: the secret keys that sign packages, one line per app.
//!
//! Format: a text file, one key per line, `<app id> <64 hex digits of the Ed25519 seed>`;
//! blank lines and lines starting with `#` are ignored. The file must not be readable by the
//! group or others (created 0600 in a 0700 directory); a keyring that is is refused, since
//! anyone who reads a key can publish updates of that app.
//! Default path: `$GRANARY_KEYRING`, else `$HOME/.config/granary/keyring`.

use crate::ids::AppId;
use ed25519_dalek::SigningKey;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A package signing key; its public half is the app id.
pub struct AppKey(SigningKey);

impl AppKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> AppKey {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system's random source failed");
        AppKey(SigningKey::from_bytes(&seed))
    }

    pub fn from_seed(seed: [u8; 32]) -> AppKey {
        AppKey(SigningKey::from_bytes(&seed))
    }

    pub fn app_id(&self) -> AppId {
        AppId(self.0.verifying_key().to_bytes())
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

/// Why the keyring could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("keyring {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Exposed { path: String, mode: u32 },
    #[error("keyring {path}, line {line}: expected `<app id> <64 hex digits>`; fix or delete that line")]
    BadLine { path: String, line: usize },
    #[error("no key for app id {app_id} in keyring {path}; packages are signed on the machine that ran `granary init`/`keygen` for this app: copy that key's line into this keyring (or set GRANARY_KEYRING)")]
    NoKey { app_id: String, path: String },
    #[error("cannot find a keyring: set GRANARY_KEYRING or HOME")]
    NoHome,
}

/// The keyring at `$GRANARY_KEYRING`, else `$HOME/.config/granary/keyring`.
pub fn default_path() -> Result<PathBuf, KeyringError> {
    if let Some(p) = std::env::var_os("GRANARY_KEYRING").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(KeyringError::NoHome)?;
    Ok(Path::new(&home).join(".config/granary/keyring"))
}

/// Loads the key for `app_id` from the keyring at `path`.
pub fn find(path: &Path, app_id: &AppId) -> Result<AppKey, KeyringError> {
    let no_key = || KeyringError::NoKey { app_id: app_id.to_string(), path: path.display().to_string() };
    if !path.exists() {
        return Err(no_key());
    }
    for key in load(path)? {
        if key.app_id() == *app_id {
            return Ok(key);
        }
    }
    Err(no_key())
}

/// Every key in the keyring at `path`, after checking its permissions.
pub fn load(path: &Path) -> Result<Vec<AppKey>, KeyringError> {
    let io = |source| KeyringError::Io { path: path.display().to_string(), source };
    let meta = fs::metadata(path).map_err(io)?;
    if meta.mode() & 0o077 != 0 {
        return Err(KeyringError::Exposed { path: path.display().to_string(), mode: meta.mode() & 0o777 });
    }
    let text = fs::read_to_string(path).map_err(io)?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || KeyringError::BadLine { path: path.display().to_string(), line: i + 1 };
        let (id, seed) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let id: AppId = id.parse().map_err(|_| bad())?;
        let seed = parse_seed(seed.trim()).ok_or_else(bad)?;
        let key = AppKey::from_seed(seed);
        if key.app_id() != id {
            return Err(bad());
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Generates a key, appends it to the keyring at `path` (created 0600, its directory 0700),
/// and returns it.
pub fn generate(path: &Path) -> Result<AppKey, KeyringError> {
    let io = |source| KeyringError::Io { path: path.display().to_string(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    }
    if path.exists() {
        load(path)?; // refuses an exposed or malformed keyring before adding to it
    }
    let key = AppKey::generate();
    let mut line = format!("{} ", key.app_id());
    for b in key.0.to_bytes() {
        line.push_str(&format!("{b:02x}"));
    }
    line.push('\n');
    let mut f = fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path).map_err(io)?;
    f.write_all(line.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(key)
}

fn parse_seed(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generate_then_find_and_refuse_exposed_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/keyring");
        let a = generate(&path).unwrap();
        let b = generate(&path).unwrap();
        assert_ne!(a.app_id(), b.app_id());
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(find(&path, &b.app_id()).unwrap().app_id(), b.app_id());
        assert!(matches!(find(&path, &AppId([9; 32])), Err(KeyringError::NoKey { .. })));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = find(&path, &a.app_id()).err().unwrap();
        assert!(matches!(err, KeyringError::Exposed { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn a_line_whose_seed_does_not_match_its_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring");
        let other = AppKey::generate().app_id();
        let text = format!("# comment\n\n{other} {}\n", "11".repeat(32));
        fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap().write_all(text.as_bytes()).unwrap();
        assert!(matches!(load(&path), Err(KeyringError::BadLine { line: 3, .. })));
    }
}
