//! Reading packages. Order of checks: header fields; declared size against the limit (before
//! decompressing a byte); decompression into a buffer of exactly the declared size (more or
//! less is an error); trailer; signature; only then the Cap'n Proto message is parsed, with
//! traversal and nesting limits, and every entry and the manifest are checked.

use super::*;
use crate::ids::{AppId, PackageId};
use crate::manifest::Manifest;
use crate::tree::valid_name;
use capnp::message::ReaderOptions;
use capnp::serialize::BufferSegments;
use capnp::Word;
use ed25519_dalek::{Signature, VerifyingKey};
use granary_schema::package_capnp::archive;
use sha2::{Digest, Sha256, Sha512};
use std::fs;
use std::io::{self, Read};
use std::path::Path;

/// A package whose signature, names, sizes, counts and manifest have all been checked.
pub struct VerifiedPackage {
    pub package_id: PackageId,
    pub app_id: AppId,
    pub manifest: Manifest,
    /// Size of the `.gpk` file.
    pub package_bytes: u64,
    /// Size of the uncompressed archive.
    pub archive_bytes: u64,
    /// Entries in the tree (files, symlinks, directories).
    pub file_count: u64,
    /// Total bytes of regular and executable files.
    pub content_bytes: u64,
    message: capnp::message::Reader<BufferSegments<AlignedWords>>,
}

impl std::fmt::Debug for VerifiedPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedPackage")
            .field("package_id", &self.package_id)
            .field("app_id", &self.app_id)
            .field("file_count", &self.file_count)
            .finish_non_exhaustive()
    }
}

impl VerifiedPackage {
    /// The root directory's entries, already checked.
    pub fn files(&self) -> capnp::struct_list::Reader<'_, archive::file::Owned> {
        let root: archive::Reader<'_> = self.message.get_root().expect("checked when the package was read");
        root.get_files().expect("checked when the package was read")
    }
}

/// The decompressed archive in 8-byte-aligned memory, as Cap'n Proto requires.
struct AlignedWords(Vec<Word>);

impl std::ops::Deref for AlignedWords {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        Word::words_to_bytes(&self.0)
    }
}

/// Reads and checks the package at `path`.
pub fn read_file(path: &Path, limits: &Limits) -> Result<VerifiedPackage, PackageError> {
    let file = fs::File::open(path).map_err(PackageError::io(path))?;
    let len = file.metadata().map_err(PackageError::io(path))?.len();
    // A file can be checked from its end first: a cut-off download is then reported as
    // truncated rather than as a corrupt body.
    if len >= (HEADER_LEN + TRAILER_LEN) as u64 {
        use std::os::unix::fs::FileExt;
        let (mut magic, mut trailer) = ([0u8; 8], [0u8; TRAILER_LEN]);
        file.read_exact_at(&mut magic, 0).map_err(PackageError::io(path))?;
        file.read_exact_at(&mut trailer, len - TRAILER_LEN as u64).map_err(PackageError::io(path))?;
        if magic == MAGIC && trailer[8..] != END_MAGIC {
            return Err(PackageError::Truncated(len));
        }
    }
    read(io::BufReader::with_capacity(1 << 16, file), len, limits).map_err(|e| match e {
        PackageError::Io { source, .. } => PackageError::Io { path: path.display().to_string(), source },
        e => e,
    })
}

/// Reads and checks a package of `len` bytes from `input`.
pub fn read(input: impl Read, len: u64, limits: &Limits) -> Result<VerifiedPackage, PackageError> {
    let io_err = |source| PackageError::Io { path: "package".into(), source };
    let mut input = HashingReader { inner: input, hash: Sha256::new() };
    if len < (HEADER_LEN + TRAILER_LEN) as u64 {
        // Still look at the magic so a random small file is "not a package", not "truncated".
        let mut head = Vec::new();
        input.by_ref().take(8).read_to_end(&mut head).map_err(io_err)?;
        return Err(if head.len() == 8 && head != MAGIC { PackageError::BadMagic } else { PackageError::Truncated(len) });
    }
    let mut header = [0u8; HEADER_LEN];
    input.read_exact(&mut header).map_err(io_err)?;
    if header[..8] != MAGIC {
        return Err(PackageError::BadMagic);
    }
    let u16_at = |o: usize| u16::from_le_bytes([header[o], header[o + 1]]);
    match u16_at(8) {
        FORMAT_VERSION => {}
        v => return Err(PackageError::UnsupportedVersion(v)),
    }
    match u16_at(10) {
        COMPRESSION_ZSTD => {}
        c => return Err(PackageError::UnsupportedCompression(c)),
    }
    if header[12..16] != [0; 4] {
        return Err(PackageError::Reserved);
    }
    let signer: [u8; 32] = header[16..48].try_into().expect("32 bytes");
    let signature = Signature::from_bytes(&header[48..112].try_into().expect("64 bytes"));
    let archive_bytes = u64::from_le_bytes(header[112..120].try_into().expect("8 bytes"));
    if archive_bytes > limits.max_archive_bytes {
        return Err(PackageError::TooLarge { declared: archive_bytes, limit: limits.max_archive_bytes });
    }
    if archive_bytes == 0 || archive_bytes % 8 != 0 {
        return Err(PackageError::BadLength(archive_bytes));
    }

    // Decompress exactly `archive_bytes`, hashing as we go.
    let body_len = len - (HEADER_LEN + TRAILER_LEN) as u64;
    let mut words = AlignedWords(Word::allocate_zeroed_vec((archive_bytes / 8) as usize));
    let mut archive_hash = Sha512::new();
    {
        let corrupt = |e: io::Error| PackageError::Corrupt(e.to_string());
        let mut decoder = zstd::stream::read::Decoder::new(input.by_ref().take(body_len))
            .map_err(corrupt)?
            .single_frame();
        let buf = Word::words_to_bytes_mut(&mut words.0);
        let mut filled = 0;
        while filled < buf.len() {
            let n = decoder.read(&mut buf[filled..]).map_err(corrupt)?;
            if n == 0 {
                return Err(PackageError::Corrupt(format!(
                    "it expands to {filled} bytes but the header declares {archive_bytes}"
                )));
            }
            archive_hash.update(&buf[filled..filled + n]);
            filled += n;
        }
        if decoder.read(&mut [0u8; 1]).map_err(corrupt)? != 0 {
            return Err(PackageError::Corrupt(format!("it expands to more than the declared {archive_bytes} bytes")));
        }
        // Whatever is left of the body after the frame must be nothing.
        let mut rest = decoder.finish();
        if rest.read(&mut [0u8; 1]).map_err(io_err)? != 0 {
            return Err(PackageError::BadTrailer);
        }
    }
    let mut trailer = [0u8; TRAILER_LEN];
    input.read_exact(&mut trailer).map_err(|_| PackageError::BadTrailer)?;
    if u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes")) != body_len || trailer[8..] != END_MAGIC {
        return Err(PackageError::BadTrailer);
    }
    let package_id = PackageId(input.hash.finalize()[..16].try_into().expect("32 bytes"));

    let key = VerifyingKey::from_bytes(&signer).map_err(|_| PackageError::BadSignature)?;
    let mut signed = SIGNATURE_CONTEXT.to_vec();
    signed.extend_from_slice(&archive_hash.finalize());
    key.verify_strict(&signed, &signature).map_err(|_| PackageError::BadSignature)?;
    let app_id = AppId(signer);

    // Signed, but by anyone: the content is still untrusted.
    let mut options = ReaderOptions::new();
    options
        .traversal_limit_in_words(Some((archive_bytes / 8) as usize * 2 + 1024))
        // Each directory level is two pointers deep (its entry list, the entry).
        .nesting_limit(limits.max_depth.saturating_mul(2).saturating_add(16).min(i32::MAX as u32) as i32);
    let segments = BufferSegments::new(words, options)?;
    let message = capnp::message::Reader::new(segments, options);
    if message.size_in_words() as u64 * 8 > archive_bytes {
        return Err(PackageError::Malformed("segment table larger than the archive".into()));
    }
    let root: archive::Reader<'_> = message.get_root()?;
    let manifest = Manifest::read(root.get_manifest()?)?;
    let claimed = manifest.app_id.clone();
    manifest.validate()?;
    if manifest.app_id()? != app_id {
        return Err(PackageError::WrongSigner { signer: app_id.to_string(), claimed });
    }
    let mut stats = Stats { files: 0, bytes: 0, limits };
    check_dir(root.get_files()?, "", 1, &mut stats)?;
    let (file_count, content_bytes) = (stats.files, stats.bytes);
    Ok(VerifiedPackage {
        package_id,
        app_id,
        manifest,
        package_bytes: len,
        archive_bytes,
        file_count,
        content_bytes,
        message,
    })
}

struct Stats<'a> {
    files: u64,
    bytes: u64,
    limits: &'a Limits,
}

/// Checks one directory's entries (which are at `depth`; the root's are at 1): valid, unique and sorted names, sane symlink targets,
/// counts and depth within the limits.
fn check_dir(
    list: capnp::struct_list::Reader<'_, archive::file::Owned>,
    parent: &str,
    depth: u32,
    stats: &mut Stats<'_>,
) -> Result<(), PackageError> {
    let dir_name = if parent.is_empty() { "/" } else { parent };
    if depth > stats.limits.max_depth && !list.is_empty() {
        let path = format!("{parent}/{}", list.get(0).get_name()?.to_string().unwrap_or_default());
        return Err(PackageError::TooDeep { path, limit: stats.limits.max_depth });
    }
    stats.files += u64::from(list.len());
    if stats.files > stats.limits.max_files {
        return Err(PackageError::TooManyFiles { limit: stats.limits.max_files });
    }
    let mut previous: Option<&str> = None;
    for entry in list.iter() {
        let name = entry.get_name()?.to_str().map_err(|_| PackageError::BadEntry {
            path: format!("{parent}/<not UTF-8>"),
            why: "names must be UTF-8".into(),
        })?;
        let path = format!("{parent}/{name}");
        if !valid_name(name) {
            let why = "a name must be one path component: not empty, `.` or `..`, without `/` or NUL".into();
            return Err(PackageError::BadEntry { path, why });
        }
        if let Some(prev) = previous {
            if prev == name {
                let why = format!("the name appears twice in {dir_name}");
                return Err(PackageError::BadEntry { path, why });
            }
            if prev > name {
                let why = format!("the entries of {dir_name} are not in sorted order");
                return Err(PackageError::BadEntry { path, why });
            }
        }
        previous = Some(name);
        use archive::file::Which;
        match entry.which().map_err(|e| PackageError::BadEntry { path: path.clone(), why: format!("unknown entry type {}", e.0) })? {
            Which::Regular(d) | Which::Executable(d) => stats.bytes += d?.len() as u64,
            Which::Symlink(t) => {
                let t = t?;
                let target = t.to_str().map_err(|_| PackageError::BadEntry { path: path.clone(), why: "symlink target is not UTF-8".into() })?;
                if target.is_empty() || target.contains('\0') || target.len() > 4095 {
                    let why = "symlink target is empty, too long or contains NUL".into();
                    return Err(PackageError::BadEntry { path, why });
                }
            }
            Which::Directory(children) => check_dir(children?, &path, depth + 1, stats)?,
        }
    }
    Ok(())
}

/// Hashes everything read through it (the package id covers the whole file).
struct HashingReader<R: Read> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}
