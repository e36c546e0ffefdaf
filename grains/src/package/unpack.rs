//! Unpacking a verified package: the tree is written into a fresh staging directory next to the
//! target, every entry created new (never through an existing path), and the staging directory
//! is renamed to the target only when everything is written. On any failure, or a crash, the
//! target does not exist (or is still the empty directory it was).

use super::*;
use granary_schema::package_capnp::archive;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `package`'s tree into `dir`, which must not exist or be an empty directory; its
/// parent must exist. Directories get mode 0755, files 0444, executables 0555.
pub fn unpack(package: &VerifiedPackage, dir: &Path) -> Result<(), PackageError> {
    let target_exists = || PackageError::TargetExists { dir: dir.display().to_string() };
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            if fs::read_dir(dir).map_err(PackageError::io(dir))?.next().is_some() {
                return Err(target_exists());
            }
        }
        Ok(_) => return Err(target_exists()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PackageError::io(dir)(e)),
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.unpacking-"))
        .tempdir_in(parent)
        .map_err(PackageError::io(parent))?;
    write_dir(package.files(), staging.path())?;
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755)).map_err(PackageError::io(staging.path()))?;
    // rename(2) replaces an empty directory and fails on a non-empty one, so a directory
    // that someone filled since the check above is never overwritten.
    fs::rename(staging.path(), dir).map_err(PackageError::io(dir))?;
    let _ = staging.keep();
    Ok(())
}

fn write_dir(list: capnp::struct_list::Reader<'_, archive::file::Owned>, dir: &Path) -> Result<(), PackageError> {
    use archive::file::Which;
    for entry in list.iter() {
        // Names were checked by `read`: single components, unique in their directory.
        let name = entry.get_name()?.to_str().map_err(|e| PackageError::Malformed(e.to_string()))?;
        let path = dir.join(name);
        let new_file = |mode: u32| {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true) // O_EXCL: never opens an existing file or follows a symlink
                .custom_flags(libc::O_NOFOLLOW)
                .mode(mode)
                .open(&path)
                // The mode is set again because the process umask applies at creation.
                .and_then(|f| f.set_permissions(fs::Permissions::from_mode(mode)).map(|_| f))
                .map_err(PackageError::io(&path))
        };
        match entry.which().map_err(|e| PackageError::Malformed(format!("unknown entry type {}", e.0)))? {
            Which::Regular(d) => new_file(0o444)?.write_all(d?).map_err(PackageError::io(&path))?,
            Which::Executable(d) => new_file(0o555)?.write_all(d?).map_err(PackageError::io(&path))?,
            Which::Symlink(t) => {
                let target = t?.to_str().map_err(|e| PackageError::Malformed(e.to_string()))?;
                std::os::unix::fs::symlink(target, &path).map_err(PackageError::io(&path))?
            }
            Which::Directory(children) => {
                fs::DirBuilder::new().mode(0o755).create(&path).map_err(PackageError::io(&path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(PackageError::io(&path))?;
                write_dir(children?, &path)?;
            }
        }
    }
    Ok(())
}
