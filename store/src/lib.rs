//! The embedded store: typed tables and atomic multi-table transactions behind the small
//! [`Store`] trait, with sled as the default engine.
//!
//! May touch: the one database directory it is opened on.
//! Must never: be opened by two processes at once (the CLI asks the running server over its
//! control socket instead), or hold secrets in the clear that a caller asked it to hash.
