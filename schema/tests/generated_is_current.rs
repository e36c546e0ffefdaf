//! The committed generated code must be exactly what `capnp compile` produces from the
//! committed schemas. Set GRANARY_REGEN=1 to rewrite it instead of comparing.

use std::path::{Path, PathBuf};

fn generate_into(out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = capnpc::CompilerCommand::new();
    cmd.src_prefix(root.join("capnp")).output_path(out);
    for f in granary_schema::SCHEMA_FILES {
        cmd.file(root.join("capnp").join(f));
    }
    if let Err(e) = cmd.run() {
        panic!(
            "could not run the Cap'n Proto compiler ({e}). Install Debian's `capnproto` and \
             `libcapnp-dev` packages, or run the README's test command, which installs them."
        );
    }
}

#[test]
fn generated_is_current() {
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/generated");
    if std::env::var_os("GRANARY_REGEN").is_some() {
        generate_into(&committed);
        return;
    }
    let fresh = tempfile::tempdir().unwrap();
    generate_into(fresh.path());
    let mut stale = Vec::new();
    for f in granary_schema::SCHEMA_FILES {
        let rs = format!("{}_capnp.rs", f.trim_end_matches(".capnp").replace('-', "_"));
        let want = std::fs::read(fresh.path().join(&rs)).expect("compiler output");
        let have = std::fs::read(committed.join(&rs)).unwrap_or_default();
        if want != have {
            stale.push(rs);
        }
    }
    assert!(
        stale.is_empty(),
        "generated code is out of date for {stale:?}: run `GRANARY_REGEN=1 cargo test -p \
         granary-schema` and commit schema/src/generated/"
    );
}
