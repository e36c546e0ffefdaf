//! Hostile packages: correctly signed (a publisher can be malicious) but carrying archives the
//! packer would never write. Each must be refused by the reader with a clear error, by
//! `granary verify` and `granary unpack`, and nothing may be written outside the target.

mod common;

use common::*;
use granary_grains::keyring::AppKey;
use granary_grains::manifest::{Action, Command, Manifest};
use granary_grains::package::{self, Limits, PackageError};
use granary_schema::package_capnp::archive;
use std::fs;
use std::path::Path;

/// An archive entry, with any name, in any order.
enum E {
    F(&'static str, Vec<u8>),
    L(&'static str, &'static str),
    D(&'static str, Vec<E>),
}

fn manifest(app_id: &str) -> Manifest {
    let cmd = Command { argv: vec!["/app/run".into()] };
    Manifest {
        app_id: app_id.into(),
        app_title: "Hostile".into(),
        app_version: 1,
        actions: vec![Action { title: "New".into(), noun_phrase: "thing".into(), command: cmd.clone() }],
        continue_command: cmd,
        ..Default::default()
    }
}

fn fill(mut list: capnp::struct_list::Builder<'_, archive::file::Owned>, entries: &[E]) {
    for (i, e) in entries.iter().enumerate() {
        let mut f = list.reborrow().get(i as u32);
        match e {
            E::F(n, data) => {
                f.set_name(*n);
                f.set_regular(data);
            }
            E::L(n, target) => {
                f.set_name(*n);
                f.set_symlink(*target);
            }
            E::D(n, children) => {
                f.set_name(*n);
                fill(f.init_directory(children.len() as u32), children);
            }
        }
    }
}

/// Signs an archive of `entries` whose manifest claims `claimed` (default: the signer).
fn write_hostile(dir: &Path, key: &AppKey, claimed: Option<&str>, entries: &[E]) -> std::path::PathBuf {
    let mut msg = capnp::message::Builder::new_default();
    let mut root: archive::Builder<'_> = msg.init_root();
    manifest(claimed.unwrap_or(&key.app_id().to_string())).write(root.reborrow().init_manifest());
    fill(root.init_files(entries.len() as u32), entries);
    let out = dir.join("hostile.gpk");
    package::write_archive(&msg, key, &out, 3, &mut |_, _| {}).unwrap();
    out
}

/// Asserts the reader, `verify` and `unpack` all refuse the package with a message containing
/// `needle`, and that unpack left nothing behind: no target, no staging directory, no file
/// outside.
fn assert_refused(dir: &Path, gpk: &Path, limits: Limits, check: impl Fn(&PackageError) -> bool, needle: &str) {
    let err = package::read_file(gpk, &limits).expect_err("the reader accepted a hostile package");
    assert!(check(&err), "wrong error: {err:?}");
    assert!(err.to_string().contains(needle), "`{needle}` not in: {err}");
    let limit_args = [
        "--max-size".to_string(),
        limits.max_archive_bytes.to_string(),
        "--max-files".into(),
        limits.max_files.to_string(),
        "--max-depth".into(),
        limits.max_depth.to_string(),
    ];
    let keyring = dir.join("unused-keyring");
    let mut args = vec!["verify".to_string(), gpk.display().to_string()];
    args.extend(limit_args.iter().cloned());
    let stderr = granary_err(&keyring, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    let target = dir.join("target");
    let mut args = vec!["unpack".to_string(), gpk.display().to_string(), target.display().to_string()];
    args.extend(limit_args.iter().cloned());
    let stderr = granary_err(&keyring, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    assert!(!target.exists(), "unpack created the target");
    let names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["hostile.gpk"], "unpack left files next to the target");
}

fn bad_entry(e: &PackageError) -> bool {
    matches!(e, PackageError::BadEntry { .. })
}

#[test]
fn names_with_dot_dot_slash_nul_or_empty_are_refused() {
    let key = AppKey::generate();
    let outside = tempfile::tempdir().unwrap();
    let escape: &'static str = Box::leak(format!("../../../../../../..{}/x", outside.path().display()).into_boxed_str());
    for entries in [
        vec![E::F("..", b"x".to_vec())],
        vec![E::F(".", b"x".to_vec())],
        vec![E::F("", b"x".to_vec())],
        vec![E::F(escape, b"escaped".to_vec())],
        vec![E::F("/etc", b"x".to_vec())],
        vec![E::F("a/b", b"x".to_vec())],
        vec![E::D("app", vec![E::F("..", b"x".to_vec())])],
        vec![E::F("nul\0byte", b"x".to_vec())],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let gpk = write_hostile(dir.path(), &key, None, &entries);
        assert_refused(dir.path(), &gpk, Limits::default(), bad_entry, "one path component");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}

#[test]
fn a_file_through_a_symlink_and_duplicate_names_are_refused() {
    let key = AppKey::generate();
    let outside = tempfile::tempdir().unwrap();
    let target: &'static str = Box::leak(outside.path().display().to_string().into_boxed_str());
    // `a` points outside; a directory also named `a` would put `x` there if followed.
    let through = vec![E::L("a", target), E::D("a", vec![E::F("x", b"escaped".to_vec())])];
    let twice = vec![E::F("same", b"1".to_vec()), E::F("same", b"2".to_vec())];
    let link_then_file = vec![E::L("f", target), E::F("f", b"escaped".to_vec())];
    for entries in [through, twice, link_then_file] {
        let dir = tempfile::tempdir().unwrap();
        let gpk = write_hostile(dir.path(), &key, None, &entries);
        assert_refused(dir.path(), &gpk, Limits::default(), bad_entry, "appears twice");
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "a file was written through the symlink");
    }
    // Unsorted names are refused too: packages are written sorted, so this one was altered.
    let dir = tempfile::tempdir().unwrap();
    let gpk = write_hostile(dir.path(), &key, None, &[E::F("b", vec![]), E::F("a", vec![])]);
    assert_refused(dir.path(), &gpk, Limits::default(), bad_entry, "not in sorted order");
}

#[test]
fn a_decompression_bomb_is_refused_before_it_is_expanded() {
    let key = AppKey::generate();
    let dir = tempfile::tempdir().unwrap();
    let gpk = write_hostile(dir.path(), &key, None, &[E::F("zeros", vec![0; 64 << 20])]);
    let size = fs::metadata(&gpk).unwrap().len();
    assert!(size < 64 << 10, "a bomb is a small file ({size} bytes)");
    let limits = Limits { max_archive_bytes: 16 << 20, ..Limits::default() };
    assert_refused(dir.path(), &gpk, limits, |e| matches!(e, PackageError::TooLarge { .. }), "more than the limit");

    // A header that lies about the size (declares 8 MiB; the body expands to 64 MiB) is
    // caught after the declared size, without expanding the rest.
    let mut bytes = fs::read(&gpk).unwrap();
    bytes[112..120].copy_from_slice(&(8u64 << 20).to_le_bytes());
    fs::write(&gpk, &bytes).unwrap();
    assert_refused(dir.path(), &gpk, limits, |e| matches!(e, PackageError::Corrupt(_)), "more than the declared");

    // With the default limit (1 GiB), a header declaring 2^40 bytes is refused up front.
    bytes[112..120].copy_from_slice(&(1u64 << 40).to_le_bytes());
    fs::write(&gpk, &bytes).unwrap();
    assert_refused(dir.path(), &gpk, Limits::default(), |e| matches!(e, PackageError::TooLarge { .. }), "raise the limit");
}

fn nested(depth: usize) -> E {
    let mut e = E::F("leaf", b"x".to_vec());
    for _ in 0..depth {
        e = E::D("d", vec![e]);
    }
    e
}

#[test]
fn nesting_deeper_than_the_limit_is_refused() {
    let key = AppKey::generate();
    let dir = tempfile::tempdir().unwrap();
    // 63 directories + the leaf = depth 64: accepted by default.
    let gpk = write_hostile(dir.path(), &key, None, &[nested(63)]);
    package::read_file(&gpk, &Limits::default()).unwrap();
    let gpk = write_hostile(dir.path(), &key, None, &[nested(64)]);
    assert_refused(dir.path(), &gpk, Limits::default(), |e| matches!(e, PackageError::TooDeep { .. }), "--max-depth");
    let gpk = write_hostile(dir.path(), &key, None, &[nested(6)]);
    let small = Limits { max_depth: 5, ..Limits::default() };
    assert_refused(dir.path(), &gpk, small, |e| matches!(e, PackageError::TooDeep { .. }), "deeper than 5");
}

#[test]
fn more_entries_than_the_limit_are_refused() {
    let key = AppKey::generate();
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&'static str> = (0..11).map(|i| &*Box::leak(format!("f{i:02}").into_boxed_str())).collect();
    let files: Vec<E> = names.iter().map(|n| E::F(n, vec![])).collect();
    let gpk = write_hostile(dir.path(), &key, None, &[E::D("app", files)]);
    let limits = Limits { max_files: 11, ..Limits::default() };
    assert_refused(dir.path(), &gpk, limits, |e| matches!(e, PackageError::TooManyFiles { .. }), "more than 11 entries");
    package::read_file(&gpk, &Limits { max_files: 12, ..Limits::default() }).unwrap();
}

#[test]
fn a_package_signed_by_key_a_claiming_app_b_is_refused() {
    let (a, b) = (AppKey::generate(), AppKey::generate());
    let dir = tempfile::tempdir().unwrap();
    let gpk = write_hostile(dir.path(), &a, Some(&b.app_id().to_string()), &[E::F("x", vec![])]);
    let needle = format!("signed by app id {} but its manifest claims app id {}", a.app_id(), b.app_id());
    assert_refused(dir.path(), &gpk, Limits::default(), |e| matches!(e, PackageError::WrongSigner { .. }), &needle);
    // The packer itself refuses to sign a manifest with another app's key.
    let err = package::pack(&manifest(&b.app_id().to_string()), &Default::default(), &a, &dir.path().join("y.gpk"), 3, &mut |_, _| {});
    assert!(matches!(err, Err(PackageError::WrongSigner { .. })));
}
