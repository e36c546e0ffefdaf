//! Structure-aware: an arbitrary file tree and manifest (any names, order, sizes, nesting, any
//! claimed app id), signed with a fixed key through `package::write_archive` to a real file,
//! then read back with `read_file` and unpacked.
#![no_main]

use arbitrary::Arbitrary;
use granary_grains::keyring::AppKey;
use granary_grains::manifest::{Action, Command, Manifest, PermissionDef, RoleDef};
use granary_grains::package;
use granary_schema::package_capnp::archive;

#[derive(Arbitrary, Debug)]
enum Entry {
    Regular(String, Vec<u8>),
    Executable(String, Vec<u8>),
    Symlink(String, String),
    Dir(String, Vec<Entry>),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Regular(n, _) | Entry::Executable(n, _) | Entry::Symlink(n, _) | Entry::Dir(n, _) => n,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Sort and deduplicate every directory (as the packer does) so deeper checks are reached.
    tidy: bool,
    /// The manifest claims this key instead of the signer's.
    claim_other: Option<[u8; 32]>,
    title: String,
    version: u32,
    min_version: u32,
    actions: Vec<(String, String, Vec<String>)>,
    continue_argv: Vec<String>,
    environment: Vec<(String, String)>,
    permissions: Vec<String>,
    roles: Vec<(String, Vec<bool>, bool)>,
    files: Vec<Entry>,
}

fn tidy(entries: &mut Vec<Entry>) {
    entries.sort_by(|a, b| a.name().cmp(b.name()));
    entries.dedup_by(|a, b| a.name() == b.name());
    for e in entries {
        if let Entry::Dir(_, children) = e {
            tidy(children);
        }
    }
}

fn fill(mut list: capnp::struct_list::Builder<'_, archive::file::Owned>, entries: &[Entry]) {
    for (i, e) in entries.iter().enumerate() {
        let mut f = list.reborrow().get(i as u32);
        f.set_name(e.name());
        match e {
            Entry::Regular(_, d) => f.set_regular(d),
            Entry::Executable(_, d) => f.set_executable(d),
            Entry::Symlink(_, t) => f.set_symlink(t.as_str()),
            Entry::Dir(_, children) => fill(f.init_directory(children.len() as u32), children),
        }
    }
}

libfuzzer_sys::fuzz_target!(|input: Input| {
    let key = AppKey::from_seed(granary_grains_fuzz::KEY_SEED);
    let claimed = match input.claim_other {
        Some(k) => AppKey::from_seed(k).app_id(),
        None => key.app_id(),
    };
    let cmd = |argv: Vec<String>| Command { argv };
    let manifest = Manifest {
        app_id: claimed.to_string(),
        app_title: input.title,
        app_version: input.version,
        min_upgradable_app_version: input.min_version,
        actions: input
            .actions
            .into_iter()
            .map(|(title, noun_phrase, argv)| Action { title, noun_phrase, command: cmd(argv) })
            .collect(),
        continue_command: cmd(input.continue_argv),
        environment: input.environment,
        permissions: input.permissions.into_iter().map(|name| PermissionDef { name, ..Default::default() }).collect(),
        roles: input
            .roles
            .into_iter()
            .map(|(name, permissions, default)| RoleDef { name, permissions, default, ..Default::default() })
            .collect(),
        ..Default::default()
    };
    let mut files = input.files;
    if input.tidy {
        tidy(&mut files);
    }
    let mut msg = capnp::message::Builder::new_default();
    let mut root: archive::Builder<'_> = msg.init_root();
    manifest.write(root.reborrow().init_manifest());
    fill(root.init_files(files.len() as u32), &files);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let gpk = dir.path().join("fuzz.gpk");
    package::write_archive(&msg, &key, &gpk, 1, &mut |_, _| {}).expect("write_archive writes any message");
    if let Ok(pkg) = package::read_file(&gpk, &granary_grains_fuzz::LIMITS) {
        granary_grains_fuzz::unpack_and_check(&pkg);
    }
});
