//! The embedded store: typed tables and atomic multi-table transactions behind the small
//! [`Store`] trait, with sled as the default engine.
//!
//! May touch: the one database directory it is opened on.
//! Must never: be opened by two processes at once (the CLI asks the running server over its
//! control socket instead), or hold secrets in the clear that a caller asked it to hash.
//!
//! # Shape
//!
//! - [`Table<K, V>`] describes a table: `const USERS: Table<String, User> = Table::new("users");`.
//!   Keys implement [`Key`] and encode to bytes in an order-preserving way (integers
//!   big-endian, strings and bytes as they are, pairs delimited; see [`key`]), so scans come
//!   back in key order. Values are any serde type, stored as JSON.
//! - [`Db`] is the typed handle: `get`, `insert`, `remove`, `iter`, `scan_prefix`, `range`,
//!   and `transaction(|tx| ...)` spanning any tables; an `Err` from the closure writes nothing.
//! - [`Store`] is the engine boundary, byte-level and object-safe: [`SledStore`] (default) and
//!   [`MemoryStore`] (tests) implement it; another engine such as redb only needs these four
//!   methods.
//! - [`Db::open`] takes the list of [`Migration`]s and brings the schema version up to date
//!   (see [`schema`]); a database from a newer build is refused.
//!
//! ```
//! use granary_store::{Db, Error, Table};
//!
//! const USERS: Table<String, u32> = Table::new("users");
//! const GRANTS: Table<(String, u64), String> = Table::new("grants");
//!
//! let db = Db::memory(&[])?;
//! db.transaction(|tx| {
//!     tx.insert(&USERS, "ada", &36)?;
//!     tx.insert(&GRANTS, &("ada".to_string(), 2), &"read".to_string())
//! })?;
//! assert_eq!(db.get(&USERS, "ada")?, Some(36));
//! let ada: Vec<((String, u64), String)> =
//!     db.scan_prefix(&GRANTS, "ada")?.collect::<Result<_, _>>()?;
//! assert_eq!(ada, [(("ada".to_string(), 2), "read".to_string())]);
//! # Ok::<(), Error>(())
//! ```
//!
//! # Durability
//!
//! Every transaction that wrote something is committed atomically and then flushed (fsync)
//! before `transaction`, `insert` or `remove` returns `Ok`: a save that returned survives
//! `kill -9` and power loss (the crash test checks the first; it fails if the flush is
//! removed). The price is one fsync per write transaction: a median of 0.2–0.75 ms for a
//! two-table transaction on the development VM's ext4 disk, against about 10–17 µs without the
//! flush (`cargo run -p granary-store --example commit_cost` measures it on another disk).
//! Transactions run one at a time, so batch related writes into one.
//! Reads outside a transaction see committed data key by key; use a transaction for a
//! consistent view of several keys.

mod db;
mod engine;
mod error;
pub mod key;
pub mod schema;
mod sled_store;

pub use db::{Db, Scan, Tx};
pub use engine::{MemoryStore, RawEntry, RawIter, Store, Writes};
pub use error::Error;
pub use key::{Key, KeyArg, PrefixOf, Table};
pub use schema::{latest_version, Migration};
pub use sled_store::SledStore;
