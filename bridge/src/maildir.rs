//! `MainView.deliverMail`: each message becomes one file in a Maildir (`<root>/new`), written
//! to `<root>/tmp` first and renamed, so a mail reader never sees half a message.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where delivered mail goes unless `--maildir` says otherwise.
pub const DEFAULT_MAILDIR: &str = "/var/mail";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A message could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("cannot store the delivered message in {path}: {error}; the grain's /var must be writable (is its storage full?)")]
pub struct DeliveryError {
    path: PathBuf,
    error: std::io::Error,
}

/// A name no other delivery of this process (or another process) uses:
/// `<unix secs>.<pid>_<counter>.granary`.
fn unique_name() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{secs}.{}_{}.granary", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Writes `data` as a new message under `root` (creating `tmp`, `new` and `cur`, mode 0700, if
/// missing): into `tmp/<name>`, fsynced, renamed to `new/<name>`, and `new` fsynced. Returns the
/// path in `new`. Blocking: run it off the executor.
pub fn deliver(root: &Path, data: &[u8]) -> Result<PathBuf, DeliveryError> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |error| DeliveryError { path, error }
    };
    for sub in ["tmp", "new", "cur"] {
        let dir = root.join(sub);
        DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(fail(&dir))?;
    }
    let name = unique_name();
    let tmp = root.join("tmp").join(&name);
    let new = root.join("new").join(&name);
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(&tmp)(e));
    }
    if let Err(e) = std::fs::rename(&tmp, &new) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(&new)(e));
    }
    let new_dir = root.join("new");
    File::open(&new_dir).and_then(|d| d.sync_all()).map_err(fail(&new_dir))?;
    Ok(new)
}

/// [`deliver`] on a thread of its own, so a large message does not stall other calls.
pub async fn deliver_async(root: PathBuf, data: Vec<u8>) -> Result<PathBuf, DeliveryError> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(deliver(&root, &data));
    });
    rx.await.unwrap_or_else(|_| {
        Err(DeliveryError { path: PathBuf::from(DEFAULT_MAILDIR), error: std::io::Error::other("the delivery thread died") })
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn names_are_unique_and_dirs_private() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("mail");
        let a = deliver(&root, b"one").unwrap();
        let b = deliver(&root, b"two").unwrap();
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().to_str().unwrap().ends_with(".granary"));
        assert_eq!(std::fs::read(&b).unwrap(), b"two");
        for sub in ["tmp", "new", "cur"] {
            let mode = std::fs::metadata(root.join(sub)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{sub}");
        }
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn an_unwritable_root_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"").unwrap();
        let err = deliver(&file, b"x").unwrap_err().to_string();
        assert!(err.contains("plain-file") && err.contains("writable"), "{err}");
    }
}
