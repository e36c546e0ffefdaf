//! Grains as the server keeps them: records in the store and storage directories on disk
//! (SPEC.md, "Grains"). Starting and stopping grains is the supervisor manager's job.

use crate::accounts::now;
use granary_store::{Db, Table};
use granary_supervisor::HostIds;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grain {
    pub id: String,
    pub package_id: String,
    pub app_id: String,
    pub owner: String,
    pub title: String,
    /// Index of the manifest action it was created with.
    pub action: u32,
    /// False until the app has been started once (the first start runs the action's
    /// command, later ones the continue command).
    pub initialized: bool,
    pub created: u64,
    pub trashed: Option<u64>,
    pub storage_bytes: Option<u64>,
}

pub const GRAINS: Table<String, Grain> = Table::new("grains");
/// (owner, grain id) → (): a user's grains without scanning every grain.
pub const OWNED: Table<(String, String), ()> = Table::new("grains_by_owner");

/// Why a grain operation failed; the message is shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum GrainError {
    #[error("a grain's title must be 1 to 200 characters")]
    BadTitle,
    #[error("move the grain to the trash before deleting it")]
    NotTrashed,
    #[error("grain not found")]
    NotFound,
    #[error("cannot prepare the grain's storage {path}: {source}")]
    Storage { path: String, source: io::Error },
    #[error(transparent)]
    Store(#[from] granary_store::Error),
}

/// A fresh grain id: 24 characters of the app-id alphabet (120 random bits).
pub fn new_id() -> String {
    let mut b = [0u8; 15];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    granary_grains::ids::base32_encode(&b)
}

fn check_title(title: &str) -> Result<String, GrainError> {
    let t = title.trim();
    if t.is_empty() || t.chars().count() > 200 {
        return Err(GrainError::BadTitle);
    }
    Ok(t.to_owned())
}

/// Where a grain's files are.
pub struct GrainDirs {
    pub root: PathBuf,
}

impl GrainDirs {
    pub fn new(data_dir: &Path, id: &str) -> GrainDirs {
        GrainDirs { root: data_dir.join("grains").join(id) }
    }
    /// The grain's `/var`.
    pub fn var(&self) -> PathBuf {
        self.root.join("var")
    }
}

/// Creates the storage directories: the grain root (0700) and `var` owned by the sandbox's
/// host ids (0700).
fn create_storage(dirs: &GrainDirs) -> Result<(), GrainError> {
    let err = |p: &Path| {
        let path = p.display().to_string();
        move |source| GrainError::Storage { path, source }
    };
    if let Some(parent) = dirs.root.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o711).create(parent).map_err(err(parent))?;
    }
    fs::DirBuilder::new().mode(0o700).create(&dirs.root).map_err(err(&dirs.root))?;
    // The app's uid must reach `var` through the root directory.
    fs::set_permissions(&dirs.root, fs::Permissions::from_mode(0o711)).map_err(err(&dirs.root))?;
    let var = dirs.var();
    fs::DirBuilder::new().mode(0o700).create(&var).map_err(err(&var))?;
    let ids = HostIds::default_for_current_user();
    std::os::unix::fs::chown(&var, Some(ids.uid), Some(ids.gid)).map_err(err(&var))?;
    Ok(())
}

/// Creates a grain: storage first, then the record.
pub fn create(db: &Db, data_dir: &Path, owner: &str, package_id: &str, app_id: &str, action: u32, title: &str) -> Result<Grain, GrainError> {
    let title = check_title(title)?;
    let id = new_id();
    let dirs = GrainDirs::new(data_dir, &id);
    create_storage(&dirs)?;
    let grain = Grain {
        id: id.clone(),
        package_id: package_id.to_owned(),
        app_id: app_id.to_owned(),
        owner: owner.to_owned(),
        title,
        action,
        initialized: false,
        created: now(),
        trashed: None,
        storage_bytes: None,
    };
    let stored = db.transaction(|tx| {
        tx.insert(&GRAINS, &id, &grain)?;
        tx.insert(&OWNED, &(owner.to_owned(), id.clone()), &())
    });
    if let Err(e) = stored {
        let _ = fs::remove_dir_all(&dirs.root);
        return Err(e.into());
    }
    Ok(grain)
}

/// The grain `id` if `user` owns it. Someone else's grain is `None`, like a missing one.
#[cfg(test)]
pub fn owned(db: &Db, user: &str, id: &str) -> Result<Option<Grain>, granary_store::Error> {
    Ok(db.get(&GRAINS, id)?.filter(|g| g.owner == user))
}

/// `user`'s grains, most recently created first.
pub fn list_owned(db: &Db, user: &str) -> Result<Vec<Grain>, granary_store::Error> {
    let mut out = Vec::new();
    for entry in db.scan_prefix(&OWNED, user)? {
        let ((_, id), ()) = entry?;
        if let Some(g) = db.get(&GRAINS, &id)? {
            out.push(g);
        }
    }
    out.sort_by_key(|g| std::cmp::Reverse(g.created));
    Ok(out)
}

/// Applies `f` to the stored grain and saves it.
pub fn update(db: &Db, id: &str, f: impl FnOnce(&mut Grain) -> Result<(), GrainError>) -> Result<Grain, GrainError> {
    db.transaction(|tx| {
        let mut g = tx.get(&GRAINS, id)?.ok_or(GrainError::NotFound)?;
        f(&mut g)?;
        tx.insert(&GRAINS, id, &g)?;
        Ok(g)
    })
}

pub fn rename(db: &Db, id: &str, title: &str) -> Result<Grain, GrainError> {
    let title = check_title(title)?;
    update(db, id, |g| {
        g.title = title;
        Ok(())
    })
}

pub fn set_trashed(db: &Db, id: &str, trashed: bool) -> Result<Grain, GrainError> {
    update(db, id, |g| {
        g.trashed = trashed.then(now);
        Ok(())
    })
}

/// Deletes a trashed grain: the record first (so it can no longer be opened or started), then
/// its storage, renamed out of the way before it is removed. The caller stops it first.
pub fn delete(db: &Db, data_dir: &Path, grain: &Grain) -> Result<(), GrainError> {
    if grain.trashed.is_none() {
        return Err(GrainError::NotTrashed);
    }
    db.transaction(|tx| {
        tx.remove(&GRAINS, &grain.id)?;
        tx.remove(&OWNED, &(grain.owner.clone(), grain.id.clone()))
    })?;
    let dirs = GrainDirs::new(data_dir, &grain.id);
    let doomed = data_dir.join("grains").join(format!(".deleting-{}", grain.id));
    let gone = |source| GrainError::Storage { path: dirs.root.display().to_string(), source };
    match fs::rename(&dirs.root, &doomed) {
        Ok(()) => fs::remove_dir_all(&doomed).map_err(gone),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(gone(e)),
    }
}

/// Removes storage left by deletions a crash interrupted.
pub fn clean_leftovers(data_dir: &Path) -> io::Result<()> {
    let dir = data_dir.join("grains");
    let Ok(entries) = fs::read_dir(&dir) else { return Ok(()) };
    for e in entries {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(".deleting-") {
            fs::remove_dir_all(e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_rename_trash_delete() {
        let data = tempfile::tempdir().unwrap();
        let db = Db::memory(&[]).unwrap();
        let g = create(&db, data.path(), "u1", "p", "a", 0, "  My notes ").unwrap();
        assert_eq!(g.title, "My notes");
        assert_eq!(g.id.len(), 24);
        assert!(GrainDirs::new(data.path(), &g.id).var().is_dir());
        assert!(owned(&db, "u2", &g.id).unwrap().is_none(), "another user's grain is not found");
        assert_eq!(list_owned(&db, "u1").unwrap().len(), 1);
        assert!(matches!(rename(&db, &g.id, " "), Err(GrainError::BadTitle)));
        rename(&db, &g.id, "Renamed").unwrap();
        assert!(matches!(delete(&db, data.path(), &g), Err(GrainError::NotTrashed)));
        let g = set_trashed(&db, &g.id, true).unwrap();
        delete(&db, data.path(), &g).unwrap();
        assert!(!GrainDirs::new(data.path(), &g.id).root.exists());
        assert!(list_owned(&db, "u1").unwrap().is_empty());
    }
}
