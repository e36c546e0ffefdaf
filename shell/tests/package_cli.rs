//! `granary keygen|init|pack|verify|unpack` through the real binary: a bit-identical round trip,
//! and 50 single-byte corruptions that `verify` and `unpack` must both refuse.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

/// A source tree with every kind of entry a package carries.
fn make_source(src: &Path) {
    fs::create_dir_all(src.join("data/empty")).unwrap();
    fs::create_dir_all(src.join("données/日本語/深い")).unwrap();
    fs::create_dir_all(src.join("also empty")).unwrap();
    fs::write(src.join("run"), b"\x00not ELF, not a script, but executable\xff").unwrap();
    fs::set_permissions(src.join("run"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("data/plain.txt"), b"hello\n").unwrap();
    fs::write(src.join("data/empty-file"), b"").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(src.join("data/big.bin"), &big).unwrap();
    fs::write(src.join("données/日本語/深い/ünïcødé ✓ file.txt"), "ça marche ✓".as_bytes()).unwrap();
    fs::write(src.join("données/tool"), b"#!/app/run\n").unwrap();
    fs::set_permissions(src.join("données/tool"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("data/plain.txt", src.join("relative-link")).unwrap();
    symlink("/app/données/日本語", src.join("absolute-link")).unwrap();
    symlink("../nowhere/at all", src.join("data/dangling")).unwrap();
}

struct Packed {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    keyring: std::path::PathBuf,
    gpk: String,
}

fn pack_sample() -> Packed {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let keyring = root.join("keys/keyring");
    let app_id = granary_ok(&keyring, &["keygen"]).trim().to_owned();
    assert_eq!(app_id.len(), 52, "keygen prints the app id: {app_id}");
    assert_eq!(fs::metadata(&keyring).unwrap().permissions().mode() & 0o777, 0o600);
    make_source(&root.join("src"));
    write_toml(&root, &app_id);
    let gpk = root.join("app.gpk").display().to_string();
    let package_id = granary_ok(&keyring, &["pack", root.to_str().unwrap(), "-o", &gpk]).trim().to_owned();
    assert_eq!(package_id.len(), 32, "pack prints the package id: {package_id}");
    Packed { _dir: dir, root, keyring, gpk }
}

#[test]
fn pack_verify_unpack_round_trips_bit_identically() {
    let p = pack_sample();
    let json: serde_json::Value =
        serde_json::from_str(&granary_ok(&p.keyring, &["verify", &p.gpk, "--json"])).unwrap();
    assert_eq!(json["title"], "Round trip");
    assert_eq!(json["app_version"], 7);
    assert_eq!(json["marketing_version"], "7.0");
    assert_eq!(json["package_bytes"], fs::metadata(&p.gpk).unwrap().len());
    let human = granary_ok(&p.keyring, &["verify", &p.gpk]);
    assert!(human.contains(json["package_id"].as_str().unwrap()), "{human}");
    assert!(human.contains(json["app_id"].as_str().unwrap()), "{human}");

    let out = p.root.join("out");
    granary_ok(&p.keyring, &["unpack", &p.gpk, out.to_str().unwrap()]);
    let want = snapshot(&p.root.join("src"));
    let got = snapshot(&out.join("app"));
    assert_eq!(want.len(), 15, "the sample tree changed: {:?}", want.keys());
    for (path, entry) in &want {
        assert_eq!(got.get(path), Some(entry), "{}", path.display());
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(json["file_count"], snapshot(&out).len() as u64, "verify counts every entry");
    for generated in ["etc/passwd", "etc/hosts", "dev", "proc", "tmp", "var"] {
        assert!(out.join(generated).symlink_metadata().is_ok(), "{generated} is in the package");
    }

    // A second unpack into the now non-empty directory is refused and changes nothing.
    let err = granary_err(&p.keyring, &["unpack", &p.gpk, out.to_str().unwrap()]);
    assert!(err.contains("not an empty directory"), "{err}");
    assert_eq!(snapshot(&out.join("app")), got);
    // An existing empty directory is fine.
    let empty = p.root.join("empty-target");
    fs::create_dir(&empty).unwrap();
    granary_ok(&p.keyring, &["unpack", &p.gpk, empty.to_str().unwrap()]);
    assert_eq!(snapshot(&empty.join("app")), got);
}

#[test]
fn every_flipped_byte_is_refused_by_verify_and_unpack() {
    let p = pack_sample();
    let good = fs::read(&p.gpk).unwrap();
    let len = good.len();
    let body = 120..len - 16;
    // 8 in the magic, 12 in the signature, 22 across the compressed body, 8 in the trailer.
    let mut positions: Vec<usize> = (0..8).collect();
    positions.extend((0..12).map(|i| 48 + i * 5));
    positions.extend((0..22).map(|i| body.start + i * (body.len() - 1) / 21));
    positions.extend((len - 16..len).step_by(2));
    assert_eq!(positions.len(), 50);
    let bad = p.root.join("bad.gpk");
    for (n, &pos) in positions.iter().enumerate() {
        let mut bytes = good.clone();
        bytes[pos] ^= 0x5a;
        fs::write(&bad, &bytes).unwrap();
        let err = granary_err(&p.keyring, &["verify", bad.to_str().unwrap()]);
        assert!(err.contains("is not a valid package"), "byte {pos}: {err}");
        let target = p.root.join(format!("target-{n}"));
        let err = granary_err(&p.keyring, &["unpack", bad.to_str().unwrap(), target.to_str().unwrap()]);
        assert!(err.contains("is not a valid package"), "byte {pos}: {err}");
        assert!(!target.exists(), "unpack left {} behind for byte {pos}", target.display());
    }
    // Nothing but the inputs is left in the directory (no staging directories).
    let mut names: Vec<String> =
        fs::read_dir(&p.root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["app.gpk", "bad.gpk", "granary.toml", "keys", "src"]);
}

#[test]
fn clear_errors_for_missing_keys_and_bad_inputs() {
    let p = pack_sample();
    let other_keyring = p.root.join("other-keyring");
    let out = p.root.join("x.gpk");
    let err = granary_err(&other_keyring, &["pack", p.root.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(err.contains("no key for app id") && err.contains("copy that key"), "{err}");
    assert!(!out.exists());

    fs::set_permissions(&p.keyring, fs::Permissions::from_mode(0o640)).unwrap();
    let err = granary_err(&p.keyring, &["pack", p.root.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(err.contains("chmod 600"), "{err}");

    let err = granary_err(&p.keyring, &["verify", p.root.join("granary.toml").to_str().unwrap()]);
    assert!(err.contains("not a Granary package"), "{err}");
    let truncated = p.root.join("cut.gpk");
    fs::write(&truncated, &fs::read(&p.gpk).unwrap()[..5000]).unwrap();
    let err = granary_err(&p.keyring, &["verify", truncated.to_str().unwrap()]);
    assert!(err.contains("truncated"), "{err}");
    let err = granary_err(&p.keyring, &["verify", p.root.join("missing.gpk").to_str().unwrap()]);
    assert!(err.contains("missing.gpk") && err.contains("No such file"), "{err}");
}

#[test]
fn init_writes_a_template_that_packs_once_the_app_exists() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("keyring");
    granary_ok(&keyring, &["init", dir.path().to_str().unwrap(), "--title", "Hello \"World\""]);
    let err = granary_err(&keyring, &["init", dir.path().to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
    fs::create_dir(dir.path().join("build")).unwrap();
    fs::copy("/bin/true", dir.path().join("build/server")).unwrap();
    let gpk = dir.path().join("app.gpk");
    granary_ok(&keyring, &["pack", dir.path().to_str().unwrap(), "-o", gpk.to_str().unwrap()]);
    let json: serde_json::Value =
        serde_json::from_str(&granary_ok(&keyring, &["verify", "--json", gpk.to_str().unwrap()])).unwrap();
    assert_eq!(json["title"], "Hello \"World\"");
}
