//! The one error type of the store. Every message says what the operator or caller should do.

use std::path::PathBuf;

/// Anything that can go wrong while opening, reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database directory could not be opened.
    #[error(
        "could not open the database at {path}: {source}; make sure no other granary process \
         is using it and that the directory exists and is writable"
    )]
    Open {
        /// The directory that was being opened.
        path: PathBuf,
        /// What the engine reported.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The storage engine failed while reading, writing or flushing.
    #[error(
        "the storage engine failed: {0}; check that the disk is writable and not full, \
         then restart granary"
    )]
    Engine(Box<dyn std::error::Error + Send + Sync>),

    /// A stored value could not be decoded as the table's value type.
    #[error(
        "table `{table}`, key {key}: the stored value is not a valid {expected}: {reason}; the \
         database is corrupt or was written by an incompatible Granary — restore it from a backup"
    )]
    CorruptValue {
        /// The table that holds the value.
        table: &'static str,
        /// The key, shown as escaped bytes.
        key: String,
        /// The Rust type the value should decode to.
        expected: &'static str,
        /// Why decoding failed.
        reason: String,
    },

    /// A stored key could not be decoded as the table's key type.
    #[error(
        "table `{table}`: the stored key {key} is not a valid {expected}: {reason}; the database \
         is corrupt or was written by an incompatible Granary — restore it from a backup"
    )]
    CorruptKey {
        /// The table that holds the key.
        table: &'static str,
        /// The key, shown as escaped bytes.
        key: String,
        /// The Rust type the key should decode to.
        expected: &'static str,
        /// Why decoding failed.
        reason: String,
    },

    /// A value could not be encoded (serde refused it, e.g. a map with non-string keys).
    #[error(
        "table `{table}`: the value could not be encoded as JSON: {reason}; change the value \
         type so that serde_json can serialize it (map keys must be strings)"
    )]
    Encode {
        /// The table being written.
        table: &'static str,
        /// What serde_json reported.
        reason: String,
    },

    /// The database's schema version is newer than this build knows.
    #[error(
        "this database was written by a newer Granary (schema {found}); upgrade granary \
         (this build knows schemas up to {known})"
    )]
    TooNew {
        /// The version recorded in the database.
        found: u32,
        /// The latest version this build knows.
        known: u32,
    },

    /// The list of migrations handed to `open` is malformed (a programming error).
    #[error(
        "migration number {index} upgrades from schema {from}, but it must upgrade from schema \
         {index}; list the migrations in order, one per schema version, starting at 0"
    )]
    MigrationOrder {
        /// Position in the list.
        index: usize,
        /// The `from` version it declared.
        from: u32,
    },

    /// A migration failed; the database stays at the version it had before that migration.
    #[error(
        "the migration from schema {from} to schema {} failed, so the database was left at \
         schema {from}: {source}; fix the cause and start granary again",
        from + 1
    )]
    Migration {
        /// The version the failed migration started from.
        from: u32,
        /// Why it failed.
        source: Box<Error>,
    },

    /// A transaction was started from inside another transaction on the same store.
    #[error(
        "a transaction was started inside another transaction on the same store, which would \
         deadlock; do the work through the `Tx` handed to the outer closure instead"
    )]
    NestedTransaction,

    /// Caller code inside a transaction or migration refused to go on; nothing was written.
    #[error("{0}; nothing was written, fix the cause and retry")]
    Rejected(String),
}

impl Error {
    /// Wrap any engine error.
    pub fn engine(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Engine(Box::new(e))
    }
}

/// Show bytes the way a person can read them in an error message: printable ASCII as is,
/// everything else as `\xNN`.
pub(crate) fn show_bytes(bytes: &[u8]) -> String {
    let mut s = String::from("b\"");
    for &b in bytes {
        s.extend(std::ascii::escape_default(b).map(char::from));
    }
    s.push('"');
    s
}
