//! Shared by the fuzz targets: read a package with small limits and, when the reader accepts it,
//! unpack it and check what landed on disk against what the reader reported.

use granary_grains::package::{self, Limits, VerifiedPackage, COMPRESSION_ZSTD, END_MAGIC, FORMAT_VERSION, MAGIC};
use sha2::{Digest, Sha512};
use std::fs;
use std::path::Path;

/// Small enough that a lying header cannot make one run allocate much.
pub const LIMITS: Limits = Limits { max_archive_bytes: 8 << 20, max_files: 100_000, max_depth: 64 };

/// Seed of the fixed signing key of the structure-aware targets. `seeds.sh` packs the seed
/// corpus with the same key so their manifests claim its app id.
pub const KEY_SEED: [u8; 32] = [7; 32];

/// Reads `gpk` from memory; if accepted, unpacks it and checks the result.
pub fn read_and_unpack(gpk: &[u8]) {
    if let Ok(pkg) = package::read(gpk, gpk.len() as u64, &LIMITS) {
        unpack_and_check(&pkg);
    }
}

/// Unpacks an accepted package into a fresh directory (under `$TMPDIR`, best a tmpfs) and checks
/// the invariants: on success the tree holds exactly the reported entries and bytes; on failure
/// nothing at all is left behind (no target, no staging directory).
pub fn unpack_and_check(pkg: &VerifiedPackage) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let out = tmp.path().join("out");
    match package::unpack(pkg, &out) {
        Ok(()) => {
            let (mut entries, mut bytes) = (0u64, 0u64);
            count(&out, &mut entries, &mut bytes);
            assert_eq!(entries, pkg.file_count, "unpacked entry count differs from the reader's");
            assert_eq!(bytes, pkg.content_bytes, "unpacked byte count differs from the reader's");
            let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(left, ["out"], "unpack left something next to the target");
        }
        Err(_) => {
            // e.g. a name longer than the file system allows: refused, and nothing remains.
            let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert!(left.is_empty(), "a failed unpack left {left:?}");
        }
    }
    // Unpacked files are 0444 in 0755 directories: removal works without chmod.
}

fn count(dir: &Path, entries: &mut u64, bytes: &mut u64) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        *entries += 1;
        if meta.is_dir() {
            count(&e.path(), entries, bytes);
        } else if meta.is_file() {
            *bytes += meta.len();
        }
    }
}

/// A complete `.gpk` in memory around `archive` (any bytes, zero-padded to a non-zero multiple
/// of 8), correctly compressed and signed with [`KEY_SEED`]: what a hostile publisher can make.
pub fn sign_archive(archive: &[u8]) -> Vec<u8> {
    let mut archive = archive.to_vec();
    archive.resize(archive.len().div_ceil(8).max(1) * 8, 0);
    let key = ed25519_dalek::SigningKey::from_bytes(&KEY_SEED);
    let mut signed = package::SIGNATURE_CONTEXT.to_vec();
    signed.extend_from_slice(&Sha512::digest(&archive));
    let signature = ed25519_dalek::Signer::sign(&key, &signed);

    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.include_checksum(true).unwrap();
    encoder.set_pledged_src_size(Some(archive.len() as u64)).unwrap();
    std::io::Write::write_all(&mut encoder, &archive).unwrap();
    let body = encoder.finish().unwrap();

    let mut gpk = Vec::with_capacity(package::HEADER_LEN + body.len() + package::TRAILER_LEN);
    gpk.extend_from_slice(&MAGIC);
    gpk.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    gpk.extend_from_slice(&COMPRESSION_ZSTD.to_le_bytes());
    gpk.extend_from_slice(&[0; 4]);
    gpk.extend_from_slice(key.verifying_key().as_bytes());
    gpk.extend_from_slice(&signature.to_bytes());
    gpk.extend_from_slice(&(archive.len() as u64).to_le_bytes());
    gpk.extend_from_slice(&body);
    gpk.extend_from_slice(&(body.len() as u64).to_le_bytes());
    gpk.extend_from_slice(&END_MAGIC);
    gpk
}
