//! How much disk each grain's storage takes, as the grain lists show it: measured by walking
//! the grain's `/var` (like `du`), at most once per [`FRESH_FOR`] per grain, so a list of many
//! grains does not walk every tree on every page view.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A measurement is reused for this long.
pub const FRESH_FOR: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct StorageMeter {
    measured: RefCell<HashMap<String, (Instant, u64)>>,
}

impl StorageMeter {
    /// Bytes used by `grain_id`'s storage at `var` (its `/var` on the host), or `None` if it
    /// cannot be read.
    pub fn grain_bytes(&self, grain_id: &str, var: &Path) -> Option<u64> {
        self.grain_bytes_at(grain_id, var, Instant::now())
    }

    fn grain_bytes_at(&self, grain_id: &str, var: &Path, now: Instant) -> Option<u64> {
        if let Some(&(at, bytes)) = self.measured.borrow().get(grain_id) {
            if now.saturating_duration_since(at) < FRESH_FOR {
                return Some(bytes);
            }
        }
        let bytes = granary_supervisor::disk_usage(var).ok()?;
        let mut measured = self.measured.borrow_mut();
        // Forget grains not shown for a while, so deleted grains do not accumulate.
        measured.retain(|_, (at, _)| now.saturating_duration_since(*at) < FRESH_FOR * 10);
        measured.insert(grain_id.to_owned(), (now, bytes));
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measurement_is_reused_while_fresh_then_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let meter = StorageMeter::default();
        let t0 = Instant::now();
        let empty = meter.grain_bytes_at("g", dir.path(), t0).unwrap();
        std::fs::write(dir.path().join("data"), vec![7u8; 256 << 10]).unwrap();
        std::fs::File::open(dir.path().join("data")).unwrap().sync_all().unwrap();
        assert_eq!(meter.grain_bytes_at("g", dir.path(), t0 + FRESH_FOR / 2), Some(empty), "fresh: not walked again");
        let grown = meter.grain_bytes_at("g", dir.path(), t0 + FRESH_FOR).unwrap();
        assert!(grown >= empty + (256 << 10), "stale: measured again ({empty} -> {grown})");
        std::fs::remove_file(dir.path().join("data")).unwrap();
        assert_eq!(meter.grain_bytes_at("g", dir.path(), t0 + FRESH_FOR * 2), Some(empty), "stale again: measured again");
        assert_eq!(meter.grain_bytes_at("missing", &dir.path().join("nope"), t0), None);
    }
}
