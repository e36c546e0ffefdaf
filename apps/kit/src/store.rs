//! State files: read a JSON document, replace it atomically (write a temporary file in the
//! same directory, fsync, rename), so a crash leaves either the old or the new state.

use crate::json::Json;
use std::io::Write;
use std::path::Path;

/// The JSON document at `path`; `None` if the file does not exist yet.
pub fn load(path: &Path) -> Result<Option<Json>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Json::parse(&text)
            .map(Some)
            .map_err(|e| format!("{} is not valid JSON ({e}); fix or delete it", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Replaces `path` with `doc`, atomically.
pub fn save(path: &Path, doc: &Json) -> Result<(), String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(doc.to_string().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write {}: {e}; is the grain's storage full or read-only?", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_replaces_and_load_reads_back() {
        let dir = std::env::temp_dir().join(format!("kit-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let _ = std::fs::remove_file(&path);
        assert_eq!(load(&path).unwrap(), None);
        save(&path, &Json::obj([("a", Json::from(1u64))])).unwrap();
        save(&path, &Json::obj([("b", Json::from("two"))])).unwrap();
        assert_eq!(load(&path).unwrap(), Some(Json::obj([("b", Json::from("two"))])));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["state.json"]);
        std::fs::write(&path, "{broken").unwrap();
        assert!(load(&path).unwrap_err().contains("not valid JSON"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
