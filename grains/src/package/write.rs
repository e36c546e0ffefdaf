//! Writing packages: the tree and manifest become one `Archive` message, which is hashed,
//! compressed and signed in a single pass into a temporary file next to the output, renamed
//! into place once complete.

use super::*;
use crate::ids::PackageId;
use crate::keyring::AppKey;
use crate::manifest::Manifest;
use crate::tree::{valid_name, Node, Source, Tree};
use ed25519_dalek::Signer;
use granary_schema::package_capnp::archive;
use sha2::{Digest, Sha256, Sha512};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// What [`pack`] wrote.
#[derive(Clone, Debug)]
pub struct PackInfo {
    pub package_id: PackageId,
    /// Size of the `.gpk` file.
    pub package_bytes: u64,
    /// Size of the uncompressed archive.
    pub archive_bytes: u64,
    /// Entries in the tree (files, symlinks, directories).
    pub file_count: u64,
}

/// Packs `manifest` and `tree` into a package at `out`, signed with `key`, which must be the
/// manifest's app id. `progress(done, total)` is called as archive bytes are compressed.
pub fn pack(
    manifest: &Manifest,
    tree: &Tree,
    key: &AppKey,
    out: &Path,
    level: i32,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PackInfo, PackageError> {
    manifest.validate()?;
    if manifest.app_id()? != key.app_id() {
        return Err(PackageError::WrongSigner {
            signer: key.app_id().to_string(),
            claimed: manifest.app_id.clone(),
        });
    }
    let mut message = capnp::message::Builder::new_default();
    let mut root: archive::Builder<'_> = message.init_root();
    manifest.write(root.reborrow().init_manifest());
    write_dir(tree, root.init_files(len32(tree.entries.len())?), "")?;
    let mut info = write_archive(&message, key, out, level, progress)?;
    info.file_count = tree.count();
    Ok(info)
}

fn len32(n: usize) -> Result<u32, PackageError> {
    u32::try_from(n).map_err(|_| PackageError::Malformed(format!("{n} entries in one directory is too many")))
}

fn write_dir(
    tree: &Tree,
    mut list: capnp::struct_list::Builder<'_, archive::file::Owned>,
    parent: &str,
) -> Result<(), PackageError> {
    for (i, (name, node)) in tree.entries.iter().enumerate() {
        let path = format!("{parent}/{name}");
        if !valid_name(name) {
            return Err(PackageError::BadEntry { path, why: "not a valid file name".into() });
        }
        let mut entry = list.reborrow().get(i as u32);
        entry.set_name(name.as_str());
        match node {
            Node::Dir(t) => write_dir(t, entry.init_directory(len32(t.entries.len())?), &path)?,
            Node::Symlink(target) => entry.set_symlink(target.as_str()),
            Node::File { source: Source::Bytes(b), executable } => {
                let size = len_checked(&path, b.len() as u64)?;
                let data = if *executable { entry.init_executable(size) } else { entry.init_regular(size) };
                data.copy_from_slice(b);
            }
            Node::File { source: Source::Path(host), executable } => {
                let mut f = fs::File::open(host).map_err(PackageError::io(host))?;
                let len = f.metadata().map_err(PackageError::io(host))?.len();
                let size = len_checked(&host.display().to_string(), len)?;
                let data = if *executable { entry.init_executable(size) } else { entry.init_regular(size) };
                f.read_exact(data).map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => PackageError::Changed(host.display().to_string()),
                    _ => PackageError::io(host)(e),
                })?;
                if f.read(&mut [0u8; 1]).map_err(PackageError::io(host))? != 0 {
                    return Err(PackageError::Changed(host.display().to_string()));
                }
            }
        }
    }
    Ok(())
}

fn len_checked(path: &str, size: u64) -> Result<u32, PackageError> {
    if size > MAX_FILE_BYTES {
        return Err(PackageError::FileTooLarge { path: path.to_owned(), size });
    }
    Ok(size as u32)
}

/// Signs and writes any `Archive` message as a package at `out` (through a temporary file in
/// the same directory, renamed into place). [`pack`] is the normal entry point; this one is
/// public so tests can sign archives the packer would refuse to build, as a hostile publisher
/// could. It checks nothing about the message: readers check everything.
pub fn write_archive<A: capnp::message::Allocator>(
    message: &capnp::message::Builder<A>,
    key: &AppKey,
    out: &Path,
    level: i32,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<PackInfo, PackageError> {
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".granary-pack-")
        .tempfile_in(dir)
        .map_err(PackageError::io(dir))?;
    let archive_bytes = 8 * capnp::serialize::compute_serialized_size_in_words(message) as u64;
    let file = tmp.as_file_mut();
    let io = PackageError::io(out);

    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[10..12].copy_from_slice(&COMPRESSION_ZSTD.to_le_bytes());
    header[16..48].copy_from_slice(&key.app_id().0);
    header[112..120].copy_from_slice(&archive_bytes.to_le_bytes());
    file.write_all(&header).map_err(&io)?;

    let mut encoder = zstd::stream::write::Encoder::new(io::BufWriter::new(&mut *file), level)
        .and_then(|mut e| e.include_checksum(true).map(|_| e))
        .and_then(|mut e| e.set_pledged_src_size(Some(archive_bytes)).map(|_| e))
        .map_err(&io)?;
    let mut tee = HashingWriter { inner: &mut encoder, hash: Sha512::new(), done: 0, total: archive_bytes, progress };
    capnp::serialize::write_message(&mut tee, message)
        .map_err(|e| PackageError::Io { path: out.display().to_string(), source: io::Error::other(e.to_string()) })?;
    let digest = tee.hash.finalize();
    encoder.finish().and_then(|mut w| w.flush()).map_err(&io)?;

    let end = file.stream_position().map_err(&io)?;
    let body_len = end - HEADER_LEN as u64;
    file.write_all(&body_len.to_le_bytes()).map_err(&io)?;
    file.write_all(&END_MAGIC).map_err(&io)?;

    let mut signed = SIGNATURE_CONTEXT.to_vec();
    signed.extend_from_slice(&digest);
    let signature = key.signing_key().sign(&signed);
    file.seek(SeekFrom::Start(48)).map_err(&io)?;
    file.write_all(&signature.to_bytes()).map_err(&io)?;

    file.seek(SeekFrom::Start(0)).map_err(&io)?;
    let mut whole = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(&io)?;
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
    }
    let package_id = PackageId(whole.finalize()[..16].try_into().expect("SHA-256 has 32 bytes"));
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(&io)?;
    file.sync_all().map_err(&io)?;
    tmp.persist(out).map_err(|e| PackageError::Io { path: out.display().to_string(), source: e.error })?;
    Ok(PackInfo { package_id, package_bytes: end + TRAILER_LEN as u64, archive_bytes, file_count: 0 })
}

/// Feeds bytes to the compressor while hashing them and reporting progress.
struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hash: Sha512,
    done: u64,
    total: u64,
    progress: &'a mut dyn FnMut(u64, u64),
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.done += n as u64;
        (self.progress)(self.done, self.total);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
