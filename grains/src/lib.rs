//! App packages and grains: the signed `.gpk` format (pack, verify, unpack), the manifest and
//! its `granary.toml` source, installed apps, and grain storage and lifecycle.
//!
//! May touch: files it is told to read when packing, the directory it is told to unpack into,
//! and the server's `apps/` and `grains/` directories.
//! Must never: write a byte of an unverified package outside its staging directory, follow a
//! symlink out of a directory it writes, or trust a name, size or count read from a package
//! before checking it against [`package::Limits`].

pub mod apps;
mod collect;
pub mod elf;
pub mod ids;
pub mod keyring;
pub mod manifest;
pub mod package;
pub mod source;
mod template;
pub mod tree;
