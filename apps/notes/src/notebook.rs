//! The notebook: notes kept in `<var>/notes.json` (`[{"id", "text", "created"}]`), replaced
//! atomically on every change and serialised by a lock.

use granary_app_kit::json::Json;
use granary_app_kit::store;
use std::path::PathBuf;
use std::sync::Mutex;

/// Longest note, in characters.
pub const MAX_TEXT: usize = 2000;
/// Most notes one notebook keeps.
pub const MAX_NOTES: usize = 10_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub id: u64,
    pub text: String,
    /// RFC 3339 UTC.
    pub created: String,
}

impl Note {
    pub fn to_json(&self) -> Json {
        Json::obj([("id", Json::from(self.id)), ("text", Json::from(self.text.as_str())), ("created", Json::from(self.created.as_str()))])
    }
}

pub struct Notebook {
    file: PathBuf,
    lock: Mutex<()>,
}

impl Notebook {
    pub fn new(var: PathBuf) -> Notebook {
        Notebook { file: var.join("notes.json"), lock: Mutex::new(()) }
    }

    /// Creates an empty notebook file if there is none (the "new grain" action).
    pub fn create(&self) -> Result<(), String> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        match store::load(&self.file)? {
            Some(_) => Ok(()),
            None => store::save(&self.file, &Json::Arr(vec![])),
        }
    }

    fn read(&self) -> Result<Vec<Note>, String> {
        let Some(doc) = store::load(&self.file)? else { return Ok(Vec::new()) };
        let broken = || format!("{} is not a list of notes; fix or delete it", self.file.display());
        let Json::Arr(items) = doc else { return Err(broken()) };
        items
            .iter()
            .map(|n| {
                let note = || Some(Note { id: n.get("id")?.as_u64()?, text: n.str_field("text")?.to_owned(), created: n.str_field("created")?.to_owned() });
                note().ok_or_else(broken)
            })
            .collect()
    }

    /// Every note, oldest first.
    pub fn list(&self) -> Result<Vec<Note>, String> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.read()
    }

    /// Adds a note (line breaks kept, surrounding space trimmed). The error is for the user.
    pub fn add(&self, text: &str, now: u64) -> Result<Note, AddError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AddError::Invalid("the note is empty; write some text".into()));
        }
        if text.chars().count() > MAX_TEXT {
            return Err(AddError::Invalid(format!("the note is longer than {MAX_TEXT} characters; shorten it")));
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut notes = self.read().map_err(AddError::Storage)?;
        if notes.len() >= MAX_NOTES {
            return Err(AddError::Invalid(format!("this notebook is full ({MAX_NOTES} notes); start a new one")));
        }
        let note = Note {
            id: notes.iter().map(|n| n.id).max().unwrap_or(0) + 1,
            text: text.to_owned(),
            created: granary_app_kit::rfc3339(now),
        };
        notes.push(note.clone());
        store::save(&self.file, &Json::Arr(notes.iter().map(Note::to_json).collect())).map_err(AddError::Storage)?;
        Ok(note)
    }
}

#[derive(Debug, PartialEq)]
pub enum AddError {
    /// The note cannot be added as it is (400).
    Invalid(String),
    /// The notebook file could not be read or written (500).
    Storage(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn temp_var(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("notes-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn notes_are_numbered_dated_and_kept_across_restarts() {
        let var = temp_var("keep");
        let book = Notebook::new(var.clone());
        assert_eq!(book.list().unwrap(), []);
        let a = book.add("  first\nline two ", 0).unwrap();
        assert_eq!(a, Note { id: 1, text: "first\nline two".into(), created: "1970-01-01T00:00:00Z".into() });
        book.add("second", 86_400).unwrap();
        let again = Notebook::new(var.clone());
        let texts: Vec<_> = again.list().unwrap().into_iter().map(|n| (n.id, n.text, n.created)).collect();
        assert_eq!(texts, [(1, "first\nline two".to_owned(), "1970-01-01T00:00:00Z".to_owned()), (2, "second".to_owned(), "1970-01-02T00:00:00Z".to_owned())]);
        // create() keeps an existing notebook.
        again.create().unwrap();
        assert_eq!(again.list().unwrap().len(), 2);
        std::fs::remove_dir_all(var).unwrap();
    }

    #[test]
    fn bad_notes_and_broken_files_are_refused_with_a_reason() {
        let var = temp_var("bad");
        let book = Notebook::new(var.clone());
        assert!(matches!(book.add(" \n ", 0), Err(AddError::Invalid(m)) if m.contains("empty")));
        assert!(matches!(book.add(&"x".repeat(MAX_TEXT + 1), 0), Err(AddError::Invalid(m)) if m.contains("longer")));
        book.add(&"é".repeat(MAX_TEXT), 0).unwrap();
        std::fs::write(var.join("notes.json"), r#"{"not": "a list"}"#).unwrap();
        assert!(book.list().unwrap_err().contains("not a list of notes"));
        assert!(matches!(book.add("x", 0), Err(AddError::Storage(_))));
        std::fs::remove_dir_all(var).unwrap();
    }
}
