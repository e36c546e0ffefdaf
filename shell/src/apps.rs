//! Installed apps: the store's records of them and installing an uploaded package.

use crate::accounts::{hex, now};
use granary_grains::apps::AppsDir;
use granary_grains::ids::PackageId;
use granary_grains::manifest::Manifest;
use granary_grains::package::{self, Limits, PackageError};
use granary_store::{Db, Table};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One installed package.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstalledApp {
    pub package_id: String,
    pub app_id: String,
    pub manifest: Manifest,
    pub installed_by: String,
    pub installed_at: u64,
    pub package_bytes: u64,
    pub content_bytes: u64,
    pub file_count: u64,
}

/// An app's icon: media type and bytes (hex).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Icon {
    pub media_type: String,
    pub hex: String,
}

pub const APPS: Table<String, InstalledApp> = Table::new("apps");
/// app id → limits an administrator set for every grain of that app.
pub const APP_LIMITS: Table<String, GrainLimits> = Table::new("app_limits");

/// Resource limits of a grain (SPEC.md, "cgroups"); the server has defaults, an
/// administrator may set others per app.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GrainLimits {
    pub memory_mib: u64,
    pub tasks: u64,
}

impl GrainLimits {
    /// Checks the values an administrator typed.
    pub fn checked(memory_mib: u64, tasks: u64) -> Result<GrainLimits, String> {
        if !(16..=1 << 20).contains(&memory_mib) {
            return Err("memory must be between 16 MiB and 1 TiB".into());
        }
        if !(8..=65536).contains(&tasks) {
            return Err("tasks must be between 8 and 65536".into());
        }
        Ok(GrainLimits { memory_mib, tasks })
    }
}
pub const ICONS: Table<String, Icon> = Table::new("app_icons");

/// What happened to an uploaded package.
pub enum Installed {
    New(InstalledApp),
    Already(InstalledApp),
}

/// A checked, unpacked package, ready to be recorded.
pub struct Unpacked {
    pub package_id: PackageId,
    pub app_id: String,
    pub manifest: Manifest,
    pub package_bytes: u64,
    pub content_bytes: u64,
    pub file_count: u64,
}

/// Checks the package at `gpk` and unpacks its image unless it is there already. Slow (it
/// decompresses and hashes the whole package): run it on a blocking thread.
pub fn verify_and_unpack(apps_root: &Path, gpk: &Path, limits: &Limits) -> Result<Unpacked, InstallError> {
    let apps = AppsDir::open(apps_root).map_err(|e| PackageError::Io { path: apps_root.display().to_string(), source: e })?;
    let pkg = package::read_file(gpk, limits)?;
    apps.install(&pkg)?;
    Ok(Unpacked {
        package_id: pkg.package_id,
        app_id: pkg.app_id.to_string(),
        manifest: pkg.manifest.clone(),
        package_bytes: pkg.package_bytes,
        content_bytes: pkg.content_bytes,
        file_count: pkg.file_count,
    })
}

/// Records an unpacked package as installed (the image exists before its record does, so a
/// record always has its image; an image without a record, after a crash, is reused).
pub fn record(db: &Db, u: Unpacked, user_id: &str) -> Result<Installed, InstallError> {
    let key = u.package_id.to_string();
    if let Some(existing) = db.get(&APPS, &key)? {
        return Ok(Installed::Already(existing));
    }
    let record = InstalledApp {
        package_id: key.clone(),
        app_id: u.app_id,
        manifest: u.manifest,
        installed_by: user_id.to_owned(),
        installed_at: now(),
        package_bytes: u.package_bytes,
        content_bytes: u.content_bytes,
        file_count: u.file_count,
    };
    let meta = &record.manifest.metadata;
    let icon = (!meta.icon.is_empty()).then(|| Icon { media_type: meta.icon_media_type.clone(), hex: hex(&meta.icon) });
    db.transaction(|tx| {
        tx.insert(&APPS, &key, &record)?;
        if let Some(icon) = &icon {
            tx.insert(&ICONS, &key, icon)?;
        }
        Ok::<_, granary_store::Error>(())
    })?;
    Ok(Installed::New(record))
}

/// Every installed package, newest version of each app first, then by title.
pub fn list(db: &Db) -> Result<Vec<InstalledApp>, granary_store::Error> {
    let mut all: Vec<InstalledApp> = db.iter(&APPS)?.map(|e| e.map(|(_, a)| a)).collect::<Result<_, _>>()?;
    all.sort_by(|a, b| {
        a.manifest.app_title.to_lowercase().cmp(&b.manifest.app_title.to_lowercase()).then(b.manifest.app_version.cmp(&a.manifest.app_version))
    });
    Ok(all)
}

pub fn get(db: &Db, package_id: &str) -> Result<Option<InstalledApp>, granary_store::Error> {
    if package_id.parse::<PackageId>().is_err() {
        return Ok(None);
    }
    db.get(&APPS, package_id)
}

pub fn icon(db: &Db, package_id: &str) -> Result<Option<(String, Vec<u8>)>, granary_store::Error> {
    Ok(db.get(&ICONS, package_id)?.map(|i| {
        let bytes = (0..i.hex.len() / 2).filter_map(|k| u8::from_str_radix(&i.hex[2 * k..2 * k + 2], 16).ok()).collect();
        (i.media_type, bytes)
    }))
}

/// Why an upload could not be installed; the message is shown to the uploader.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Package(#[from] PackageError),
    #[error(transparent)]
    Store(#[from] granary_store::Error),
}
