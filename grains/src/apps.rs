//! Installed apps on disk: `<apps dir>/<package id>/` holds one verified package's unpacked
//! file tree, the read-only root of every grain of that package. Images are written through a
//! staging directory ([`crate::package::unpack`]) and removed by first renaming them out of
//! the way, so a crash never leaves a half-written or half-deleted image under its real name.

use crate::ids::PackageId;
use crate::package::{self, PackageError, VerifiedPackage};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The directory of installed app images.
pub struct AppsDir {
    root: PathBuf,
}

impl AppsDir {
    /// Opens (creating, mode 0755) the apps directory at `root`, and removes leftovers of
    /// interrupted installs and removals.
    pub fn open(root: &Path) -> io::Result<AppsDir> {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(root)?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(AppsDir { root: root.to_owned() })
    }

    /// Where the image of `id` is (whether or not it is installed).
    pub fn image(&self, id: &PackageId) -> PathBuf {
        self.root.join(id.to_string())
    }

    pub fn is_installed(&self, id: &PackageId) -> bool {
        self.image(id).is_dir()
    }

    /// Unpacks `package` into its image directory unless it is already there. Returns the
    /// image path.
    pub fn install(&self, package: &VerifiedPackage) -> Result<PathBuf, PackageError> {
        let dir = self.image(&package.package_id);
        if !dir.exists() {
            package::unpack(package, &dir)?;
        }
        Ok(dir)
    }

    /// Removes the image of `id` (no error if it is not there).
    pub fn remove(&self, id: &PackageId) -> io::Result<()> {
        let dir = self.image(id);
        let doomed = self.root.join(format!(".removing-{id}"));
        match fs::rename(&dir, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}
