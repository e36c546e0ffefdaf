//! The signed `.gpk` package format: [`pack`] writes one, [`read`] checks one (signature first,
//! then every name, size and count against [`Limits`]), [`unpack`] writes a checked package's
//! file tree into a new directory through a staging directory.
//!
//! Byte layout (all integers little-endian; SPEC.md, "The .gpk package format"):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `89 47 50 4B 0D 0A 1A 0A` |
//! | 8 | 2 | format version, 1 |
//! | 10 | 2 | compression, 1 = zstd |
//! | 12 | 4 | reserved, 0 |
//! | 16 | 32 | signer's Ed25519 public key (= the app id) |
//! | 48 | 64 | Ed25519 signature over `"granary package v1\0" ‖ SHA-512(archive)` |
//! | 112 | 8 | archive length in bytes (uncompressed, a multiple of 8) |
//! | 120 | n | body: one zstd frame (with content checksum) of the archive |
//! | 120+n | 8 | body length n |
//! | 128+n | 8 | end magic `"GPK-END\n"` |
//!
//! The archive is the standard Cap'n Proto serialization (segment table + segments) of one
//! `package.capnp` `Archive` message.

mod read;
mod unpack;
mod write;

pub use read::{read, read_file, VerifiedPackage};
pub use unpack::unpack;
pub use write::{pack, write_archive, PackInfo};

/// First bytes of every package.
pub const MAGIC: [u8; 8] = [0x89, b'G', b'P', b'K', 0x0d, 0x0a, 0x1a, 0x0a];
/// Last bytes of every package.
pub const END_MAGIC: [u8; 8] = *b"GPK-END\n";
/// The only format version this code reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Compression code for zstd.
pub const COMPRESSION_ZSTD: u16 = 1;
/// Size of the fixed header before the compressed body.
pub const HEADER_LEN: usize = 120;
/// Size of the trailer after the compressed body.
pub const TRAILER_LEN: usize = 16;
/// Domain separation prefix of the signed message.
pub const SIGNATURE_CONTEXT: &[u8] = b"granary package v1\0";
/// Largest single file a package can carry (a Cap'n Proto `Data` holds at most 2^29 - 1 bytes).
pub const MAX_FILE_BYTES: u64 = (1 << 29) - 1;
/// zstd level `granary pack` uses (BENCHMARKS.md: level 9 packs 25× faster than xz -6 and
/// unpacks 13× faster, for 30% more bytes).
pub const DEFAULT_LEVEL: i32 = 9;

/// What a reader accepts. Every limit is checked before the resource is used: the archive
/// length before decompressing, counts and depth before anything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest uncompressed archive (the whole file tree plus manifest), in bytes.
    pub max_archive_bytes: u64,
    /// Most entries (files, symlinks, directories) in the tree.
    pub max_files: u64,
    /// Deepest directory nesting (`/a/b/c` is depth 3).
    pub max_depth: u32,
}

impl Default for Limits {
    /// 1 GiB uncompressed, 200 000 entries, depth 64.
    fn default() -> Self {
        Limits { max_archive_bytes: 1 << 30, max_files: 200_000, max_depth: 64 }
    }
}

/// Why a package could not be written, read or unpacked. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("not a Granary package (wrong magic bytes); is this really a .gpk file?")]
    BadMagic,
    #[error("the file is truncated or damaged at its end ({0} bytes); download or copy it again")]
    Truncated(u64),
    #[error("package format version {0} is not supported by this Granary (it reads version 1); upgrade Granary")]
    UnsupportedVersion(u16),
    #[error("package compression {0} is not supported (only 1 = zstd); repack it with `granary pack`")]
    UnsupportedCompression(u16),
    #[error("the package header's reserved bytes are not zero; the file is damaged or was altered")]
    Reserved,
    #[error("the package trailer is damaged (wrong body length or end marker); the file was truncated or altered")]
    BadTrailer,
    #[error("the package expands to {declared} bytes, more than the limit of {limit} bytes; if you trust it, raise the limit (--max-size)")]
    TooLarge { declared: u64, limit: u64 },
    #[error("the package's declared archive length {0} is impossible (must be a non-zero multiple of 8); the file is damaged or was altered")]
    BadLength(u64),
    #[error("the compressed body is corrupt ({0}); the file is damaged or was altered")]
    Corrupt(String),
    #[error("the signature does not match the contents: the file is damaged or was altered after signing; get it again from the app's publisher")]
    BadSignature,
    #[error("the package is signed by app id {signer} but its manifest claims app id {claimed}; refusing a package that impersonates another app")]
    WrongSigner { signer: String, claimed: String },
    #[error("the archive is malformed: {0}")]
    Malformed(String),
    #[error("unsafe entry `{path}`: {why}")]
    BadEntry { path: String, why: String },
    #[error("the package has more than {limit} entries; if you trust it, raise the limit (--max-files)")]
    TooManyFiles { limit: u64 },
    #[error("`{path}` is nested deeper than {limit} directories; if you trust it, raise the limit (--max-depth)")]
    TooDeep { path: String, limit: u32 },
    #[error("invalid manifest: {0}")]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error("`{path}` is {size} bytes; a package file may be at most {MAX_FILE_BYTES} bytes")]
    FileTooLarge { path: String, size: u64 },
    #[error("`{0}` changed while it was being packed; pack again when nothing is writing to it")]
    Changed(String),
    #[error("{dir} already exists and is not an empty directory; choose a new directory")]
    TargetExists { dir: String },
}

impl PackageError {
    pub(crate) fn io(path: impl AsRef<std::path::Path>) -> impl Fn(std::io::Error) -> PackageError {
        let path = path.as_ref().display().to_string();
        move |source| PackageError::Io { path: path.clone(), source }
    }
}

impl From<capnp::Error> for PackageError {
    fn from(e: capnp::Error) -> Self {
        PackageError::Malformed(e.to_string())
    }
}
