//! Raw Cap'n Proto interfaces through the powerbox, end to end over real HTTP with real grains
//! (root): two grains of `apps/counter` (a static binary, packed here). Grain B asks for a
//! `Counter` by type id, the person picks grain A in the dialog, B's server claims it through
//! the bridge's local API and calls it over the bridge's local Cap'n Proto endpoint; the call
//! reaches A's `AppObjects` through A's bridge (`MainView.provide`). The capability B holds
//! survives a restart of the provider grain (made again by `provide`), the grant a server
//! restart; revoking it ends the live capability at once.

mod common;
mod grainkit;
mod server;

use grainkit::{require_root, OpenGrain as Open, Origin};
use granary_powerbox::matching::{encode_descriptor, interface_descriptor};
use serde_json::{json, Value};
use server::{bridge, Client, TestServer};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `sample.capnp`'s Counter.
const COUNTER: u64 = 0xa238_4a22_bc95_e238;

/// `apps/counter` built static in the profile and the `<target>/apps` directory the browser
/// suite uses (tests/tests/browser.rs), so one build serves both, packed and signed with a key
/// of a temporary keyring; once per test process.
fn counter_gpk() -> PathBuf {
    static GPK: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    GPK.get_or_init(|| {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_granary"));
        let profile_dir = exe.parent().unwrap();
        let profile = profile_dir.file_name().unwrap().to_str().unwrap().to_owned();
        let target_dir = profile_dir.parent().unwrap().join("apps");
        let app = concat!(env!("CARGO_MANIFEST_DIR"), "/../apps/counter");
        let out = Command::new(env!("CARGO"))
            .args(["build", "--locked", "--quiet", "--target", "x86_64-unknown-linux-gnu"])
            .args((profile == "release").then_some("--release"))
            .arg("--manifest-path")
            .arg(format!("{app}/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .output()
            .expect("run cargo to build apps/counter");
        assert!(out.status.success(), "building the static counter app failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let dir = tempfile::tempdir().unwrap();
        let keyring = dir.path().join("keyring");
        let app_id = common::granary_ok(&keyring, &["keygen"]).trim().to_owned();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("bin")).unwrap();
        let toml = fs::read_to_string(format!("{app}/granary.toml")).unwrap();
        fs::write(src.join("granary.toml"), toml.replace("REPLACE_WITH_APP_ID", &app_id)).unwrap();
        fs::copy(format!("{app}/icon.svg"), src.join("icon.svg")).unwrap();
        fs::copy(target_dir.join("x86_64-unknown-linux-gnu").join(&profile).join("counter"), src.join("bin/counter")).unwrap();
        fs::set_permissions(src.join("bin/counter"), fs::Permissions::from_mode(0o755)).unwrap();
        let gpk = dir.path().join("counter.gpk");
        common::granary_ok(&keyring, &["pack", src.to_str().unwrap(), "-o", gpk.to_str().unwrap(), "--level", "1"]);
        (dir, gpk)
    })
    .1
    .clone()
}

/// A counter grain's first request: its state.
fn shows_its_tally(o: &mut Origin, _session: &str) {
    assert_eq!(o.json("/state", &[])["name"], "Tally");
}

fn open(s: &TestServer, c: &mut Client, pkg: &str, title: &str) -> Open {
    grainkit::open_new_grain(s, c, pkg, title, shows_its_tally)
}

fn reopen(s: &TestServer, c: &mut Client, url: &str, id: &str) -> Open {
    grainkit::reopen_grain(s, c, url, id, shows_its_tally)
}

/// POSTs JSON to the counter on its session origin; returns (status, JSON).
fn post(g: &mut Open, path: &str, body: Value) -> (u16, Value) {
    let host = g.o.host.clone();
    let r = g.o.c.upload_with(path, body.to_string().as_bytes(), "", &[("Host", host.as_str())]);
    (r.status, serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body)))
}

/// The dialog's route `what` (`options` or `pick`) as the person `c` on `g`'s page.
fn dialog(c: &mut Client, g: &Open, what: &str, query: &[String], option: &str) -> Value {
    let csrf = c.get(&g.url).hidden("csrf");
    let q = serde_json::to_string(query).unwrap();
    let r = c.post(&format!("/grains/{}/powerbox/{what}", g.id), &[("csrf", &csrf), ("session", &g.session), ("query", &q), ("option", option)]);
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn remote_add(g: &mut Open, amount: i64) -> Value {
    let (status, v) = post(g, "/remote/add", json!({ "amount": amount }));
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn a_grain_uses_another_grains_counter_by_type_id_until_the_grant_is_revoked() {
    require_root();
    let mut s = TestServer::start_with(&["--bridge", bridge().to_str().unwrap()]);
    let mut ann = grainkit::admin(&s);
    let pkg = ann.install(&fs::read(counter_gpk()).unwrap());
    let a = open(&s, &mut ann, &pkg, "Kitchen");
    let mut b = open(&s, &mut ann, &pkg, "Garage");

    // B's page asks with the descriptor its server makes: Counter's type id, any value.
    let descriptor = b.o.json("/descriptor", &[])["descriptor"].as_str().unwrap().to_owned();
    assert_eq!(descriptor, encode_descriptor(&interface_descriptor(COUNTER)));
    let query = vec![descriptor];
    let opts = dialog(&mut ann, &b, "options", &query, "");
    let option = format!("object:{}:{COUNTER:016x}:0", a.id);
    assert_eq!(opts["options"].as_array().unwrap().len(), 1, "grain A only, not B itself: {opts}");
    assert_eq!(opts["options"][0]["id"], option.as_str(), "{opts}");
    assert_eq!(opts["options"][0]["title"], "Kitchen");
    assert_eq!(opts["options"][0]["verbPhrase"], "Counter (Counter)");
    assert_eq!(opts["asked"], "It asks for a “Counter”, which Counter grains provide.", "named as the installed app names it: {opts}");

    // B's server claims the pick (POST /claim on the bridge) and calls A's counter.
    let picked = dialog(&mut ann, &b, "pick", &query, &option);
    let claim = picked["token"].as_str().unwrap();
    assert!(claim.starts_with("gc_"), "{picked}");
    let (status, v) = post(&mut b, "/connect", json!({ "claimToken": claim }));
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["ok"].as_bool(), v["total"].as_i64(), v["name"].as_str()), (Some(true), Some(0), Some("Tally")), "{v}");
    assert_eq!(remote_add(&mut b, 5)["total"], 5);
    let mut a = reopen(&s, &mut ann, &a.url, &a.id);
    assert_eq!(a.o.json("/state", &[])["total"], 5, "A's own page shows what B added");
    assert_eq!(b.o.json("/state", &[])["total"], 0, "B's tally is its own");
    let (status, v) = post(&mut a, "/add", json!({}));
    assert_eq!((status, v["total"].as_i64()), (200, Some(6)), "{v}");

    // The grant is listed on both grains' reach pages.
    let page = ann.get(&format!("/grains/{}/reach", b.id));
    assert!(page.body.contains("may use Counter in “Kitchen”"), "{}", page.body);
    let grants: Vec<String> = page.body.split("data-grant=\"").skip(1).map(|r| r.split('"').next().unwrap().to_owned()).collect();
    assert_eq!(grants.len(), 1, "{grants:?}");

    // B holds the restored capability. After the provider grain restarts, the same capability
    // works: the platform asks the new run of A for its counter again (B restored nothing).
    assert_eq!(b.o.json("/remote", &[])["restores"], 1);
    let csrf = ann.get(&format!("/grains/{}", a.id)).hidden("csrf");
    let r = ann.post(&format!("/grains/{}/restart", a.id), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.body);
    let v = remote_add(&mut b, 1);
    assert_eq!((v["total"].as_i64(), v["restores"].as_i64()), (Some(7), Some(1)), "{v}");

    // After the server restarts, B's held capability is gone; B restores its token and calls.
    s.kill_and_restart();
    let mut b = reopen(&s, &mut ann, &b.url, &b.id);
    let v = remote_add(&mut b, 1);
    assert_eq!((v["total"].as_i64(), v["restores"].as_i64()), (Some(8), Some(2)), "{v}");
    let v = b.o.json("/remote", &[]);
    assert_eq!((v["total"].as_i64(), v["name"].as_str()), (Some(8), Some("Tally")), "{v}");

    // Revoking the grant ends it: B's next call fails, saying so.
    let csrf = ann.get("/reach").hidden("csrf");
    let r = ann.post(&format!("/grants/{}/revoke", grants[0]), &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{}", r.body);
    let since = Instant::now();
    let v = remote_add(&mut b, 1);
    let took = since.elapsed();
    assert_eq!(v["ok"], false, "the first call after the revocation worked: {v}");
    // The held capability's membrane answers, with the grant's display text.
    assert!(v["error"].as_str().unwrap().starts_with("revoked: may use Counter in “Kitchen”"), "{v}");
    let v = remote_add(&mut b, 1);
    assert!(v["error"].as_str().unwrap().starts_with("revoked: this saved capability is unknown"), "restoring again is refused: {v}");
    eprintln!("raw interface: the first call after revoking failed after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let mut a = reopen(&s, &mut ann, &a.url, &a.id);
    assert_eq!(a.o.json("/state", &[])["total"], 8, "nothing was added after the revocation");
}
