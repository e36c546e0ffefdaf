//! `granary.toml` loading: the manifest, the file rules, and their errors.

mod common;

use common::*;
use granary_grains::source::{init_template, load, Problem};
use granary_grains::tree::{Node, Source};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn full_toml() -> String {
    format!(
        r#"
[app]
id = "{id}"
title = "Notes"
version = 3
marketing_version = "1.2.0"
min_upgradable_version = 1
environment = {{ PATH = "/usr/bin:/bin", HOME = "/var" }}
continue_command = ["/app/server", "--port", "8000"]

[[actions]]
title = "New notebook"
noun = "notebook"
command = ["/app/server", "--new"]

[http]
port = 8000
api_path = "/api"

[[permissions]]
name = "read"
title = "Read"

[[permissions]]
name = "edit"
title = "Edit"
description = "Change notes"
obsolete = false

[[roles]]
name = "viewer"
title = "Viewer"
permissions = ["read"]

[[roles]]
name = "editor"
title = "Editor"
description = "Reads and edits"
permissions = ["edit", "read"]
default = true

[[powerbox.provides]]
api = "notes"
title = "Notes"
path_prefix = "/api/"
permissions = ["read"]

[[powerbox.provides]]
api = "notes-admin"
title = "Notes (editing)"
path_prefix = "/api/admin/"
permissions = ["read", "edit"]

[metadata]
icon = "icon.svg"
description = "Take notes"
license = "MIT"
author = "Ann"
website = "https://example.org"

[files]
map = [ {{ to = "/app", from = "build" }}, {{ to = "/", from = "/" }} ]
include = ["/app"]
hide = ["/app/.git"]
"#,
        id = app_id()
    )
}

/// A project directory: build/server (a shell script), build/link -> server, build/.git,
/// build/lib -> ../shared (a directory symlink), shared/data.txt, icon.svg.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_exec(&d.join("build/server"), "#!/bin/sh\necho hi\n");
    std::fs::create_dir_all(d.join("build/.git")).unwrap();
    std::fs::write(d.join("build/.git/config"), "secret").unwrap();
    std::os::unix::fs::symlink("server", d.join("build/link")).unwrap();
    std::fs::create_dir_all(d.join("shared")).unwrap();
    std::fs::write(d.join("shared/data.txt"), "data").unwrap();
    std::os::unix::fs::symlink("../shared", d.join("build/lib")).unwrap();
    std::fs::write(d.join("icon.svg"), "<svg/>").unwrap();
    write_toml(d, &full_toml());
    dir
}

#[test]
fn full_example_loads_manifest_and_files() {
    let dir = project();
    let src = load(&dir.path().join("granary.toml")).unwrap();
    let m = &src.manifest;
    assert_eq!(m.app_id, app_id());
    assert_eq!((m.app_title.as_str(), m.app_version, m.min_upgradable_app_version), ("Notes", 3, 1));
    assert_eq!(m.app_marketing_version, "1.2.0");
    assert_eq!(m.continue_command.argv, ["/app/server", "--port", "8000"]);
    assert_eq!(m.actions[0].noun_phrase, "notebook");
    assert_eq!(m.actions[0].command.argv, ["/app/server", "--new"]);
    assert_eq!(
        m.environment,
        vec![("HOME".to_owned(), "/var".to_owned()), ("PATH".to_owned(), "/usr/bin:/bin".to_owned())]
    );
    assert_eq!((m.http.port, m.http.api_path.as_str()), (8000, "/api"));
    assert_eq!(m.permissions[1].description, "Change notes");
    assert_eq!(m.metadata.icon, b"<svg/>");
    assert_eq!(m.metadata.icon_media_type, "image/svg+xml");
    assert_eq!((m.metadata.license.as_str(), m.metadata.website.as_str()), ("MIT", "https://example.org"));

    let t = &src.tree;
    let server = dir.path().join("build/server");
    assert_eq!(t.get("/app/server"), Some(&Node::File { source: Source::Path(server), executable: true }));
    // The script's interpreter, its loader and libc came along, resolvable as in a chroot.
    assert!(host_file(t, "/bin/sh").is_some(), "no /bin/sh");
    assert_eq!(t.get("/bin"), Some(&Node::Symlink("usr/bin".into())));
    for lib in ldd("/bin/sh") {
        assert!(host_file(t, &lib).is_some(), "{lib} missing from the tree");
    }
    // build/lib -> ../shared leaves the mapped directory and dangles (see below).
    assert_eq!(src.skipped.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(), ["/app/lib"]);
}

#[test]
fn role_permissions_are_named_and_unknown_names_refused() {
    let dir = project();
    let m = load(&dir.path().join("granary.toml")).unwrap().manifest;
    assert_eq!(m.roles[0].permissions, [true, false]);
    assert_eq!(m.roles[1].permissions, [true, true]);
    assert!(m.roles[1].default && !m.roles[0].default);

    write_toml(dir.path(), &full_toml().replace(r#"["read"]"#, r#"["write"]"#));
    let err = load(&dir.path().join("granary.toml")).unwrap_err();
    assert!(matches!(&err.problem, Problem::UnknownPermission { permission, .. } if permission == "write"), "{err}");
    assert!(err.to_string().contains("granary.toml"), "{err}");
}

#[test]
fn provided_apis_are_read_with_named_permissions() {
    let dir = project();
    let m = load(&dir.path().join("granary.toml")).unwrap().manifest;
    let got: Vec<_> = m.provides.iter().map(|p| (p.api.as_str(), p.title.as_str(), p.path_prefix.as_str(), p.permissions.clone())).collect();
    assert_eq!(got, [("notes", "Notes", "/api/", vec![true, false]), ("notes-admin", "Notes (editing)", "/api/admin/", vec![true, true])]);

    let toml = |from: &str, to: &str| write_toml(dir.path(), &full_toml().replacen(from, to, 1));
    toml(r#"permissions = ["read", "edit"]"#, r#"permissions = ["read", "admin"]"#);
    let err = load(&dir.path().join("granary.toml")).unwrap_err();
    assert!(
        matches!(&err.problem, Problem::UnknownApiPermission { api, permission } if api == "notes-admin" && permission == "admin"),
        "{err}"
    );
    assert!(err.to_string().contains("`admin`"), "{err}");
    toml(r#"api = "notes-admin""#, r#"api = "notes""#);
    let err = load(&dir.path().join("granary.toml")).unwrap_err().to_string();
    assert!(err.contains("`notes` is listed twice"), "{err}");
    toml(r#"path_prefix = "/api/admin/""#, r#"path_prefix = "/api/../admin/""#);
    let err = load(&dir.path().join("granary.toml")).unwrap_err().to_string();
    assert!(err.contains("/api/../admin/") && err.contains("granary.toml"), "{err}");
    toml(r#"api = "notes-admin""#, r#"api = "Notes Admin""#);
    let err = load(&dir.path().join("granary.toml")).unwrap_err().to_string();
    assert!(err.contains("`Notes Admin` is invalid"), "{err}");
    toml(r#"[[powerbox.provides]]"#, "[[powerbox.provides]]\nscope = \"all\"");
    let err = load(&dir.path().join("granary.toml")).unwrap_err().to_string();
    assert!(err.contains("scope"), "{err}");
    // Without a [powerbox] table the app provides nothing.
    write_toml(dir.path(), &minimal_toml("/app/server", r#"map = [{ to = "/app", from = "build" }, { to = "/", from = "/" }]"#));
    assert_eq!(load(&dir.path().join("granary.toml")).unwrap().manifest.provides, []);
}

#[test]
fn provided_interfaces_and_choosers_are_read() {
    let dir = project();
    let extra = "[[powerbox.provides]]\ninterface = \"0xb5e3f0c2a9d84f61\"\ntitle = \"Counter\"\npermissions = [\"edit\"]\nchooser_path = \"/pick?x=1\"\n\n[capnp]\nport = 8001\n\n[metadata]";
    let toml = |from: &str, to: &str| write_toml(dir.path(), &full_toml().replacen("[metadata]", extra, 1).replacen(from, to, 1));
    toml("", "");
    let m = load(&dir.path().join("granary.toml")).unwrap().manifest;
    assert_eq!(m.capnp_port, 8001);
    let p = &m.provides[2];
    assert_eq!((p.interface_id, p.api.as_str(), p.title.as_str(), p.chooser_path.as_str()), (0xb5e3_f0c2_a9d8_4f61, "", "Counter", "/pick?x=1"));
    assert_eq!(p.permissions, [false, true]);
    for bad in ["b5e3f0c2a9d84f61", "0xzz", "0x1b5e3f0c2a9d84f61"] {
        toml("0xb5e3f0c2a9d84f61", bad);
        let err = load(&dir.path().join("granary.toml")).unwrap_err();
        assert!(matches!(&err.problem, Problem::BadInterface(s) if s == bad), "{bad}: {err}");
    }
    toml("0xb5e3f0c2a9d84f61", "0x35e3f0c2a9d84f61");
    let err = load(&dir.path().join("granary.toml")).unwrap_err().to_string();
    assert!(err.contains("top bit"), "{err}");
    toml("[capnp]\nport = 8001", "");
    let err = load(&dir.path().join("granary.toml")).unwrap_err().to_string();
    assert!(err.contains("[capnp] port"), "{err}");
    toml(r#"permissions = ["edit"]"#, r#"permissions = ["fly"]"#);
    let err = load(&dir.path().join("granary.toml")).unwrap_err().to_string();
    assert!(err.contains("interface 0xb5e3f0c2a9d84f61") && err.contains("`fly`"), "{err}");
    toml(r#"chooser_path = "/pick?x=1""#, r#"chooser_path = "//evil.example/""#);
    let err = load(&dir.path().join("granary.toml")).unwrap_err().to_string();
    assert!(err.contains("//evil.example/"), "{err}");
}

#[test]
fn provided_apis_survive_pack_and_verify() {
    let key = granary_grains::keyring::AppKey::from_seed([9; 32]);
    let dir = project();
    write_toml(dir.path(), &full_toml().replace(&app_id(), &key.app_id().to_string()));
    let src = load(&dir.path().join("granary.toml")).unwrap();
    let out = dir.path().join("notes.gpk");
    granary_grains::package::pack(&src.manifest, &src.tree, &key, &out, 1, &mut |_, _| {}).unwrap();
    let read = granary_grains::package::read_file(&out, &Default::default()).unwrap();
    assert_eq!(read.manifest.provides.len(), 2);
    assert_eq!(read.manifest, src.manifest);
}

#[test]
fn unknown_keys_are_named() {
    let dir = project();
    for (from, to) in [("noun = ", "nown = "), ("api_path", "apipath"), ("[metadata]", "[metadata]\ncolour = \"red\"")] {
        write_toml(dir.path(), &full_toml().replacen(from, to, 1));
        let err = load(&dir.path().join("granary.toml")).unwrap_err().to_string();
        let key = to.trim_start_matches("[metadata]\n").split([' ', '=']).next().unwrap();
        assert!(err.contains(key) && err.contains("granary.toml"), "{key}: {err}");
    }
}

#[test]
fn manifest_is_validated() {
    let dir = project();
    write_toml(dir.path(), &full_toml().replace("min_upgradable_version = 1", "min_upgradable_version = 9"));
    let err = load(&dir.path().join("granary.toml")).unwrap_err();
    assert!(matches!(err.problem, Problem::Manifest(_)), "{err}");
}

#[test]
fn missing_command_names_the_path_and_what_to_do() {
    let dir = project();
    std::fs::remove_file(dir.path().join("build/server")).unwrap();
    let err = load(&dir.path().join("granary.toml")).unwrap_err();
    assert!(matches!(&err.problem, Problem::NotFound { path, .. } if path == "/app/server"), "{err}");
    let text = err.to_string();
    assert!(text.contains("argv[0]") && text.contains("[files]") && text.contains("build/server"), "{text}");
}

#[test]
fn commands_must_be_executable() {
    let dir = project();
    std::fs::write(dir.path().join("build/server"), "not executable").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path().join("build/server"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = load(&dir.path().join("granary.toml")).unwrap_err();
    assert!(matches!(err.problem, Problem::NotExecutable { .. }), "{err}");
}

#[test]
fn hide_is_respected() {
    let dir = project();
    let t = load(&dir.path().join("granary.toml")).unwrap().tree;
    assert!(t.get("/app/.git").is_none() && t.get("/app/.git/config").is_none());
    assert!(t.get("/app/server").is_some());
    // Needing a hidden path is an error that names the hide entry.
    write_toml(dir.path(), &full_toml().replace(r#"hide = ["/app/.git"]"#, r#"hide = ["/app/.git", "/app/server"]"#));
    let err = load(&dir.path().join("granary.toml")).unwrap_err();
    assert!(matches!(&err.problem, Problem::Hidden { rule, .. } if rule == "/app/server"), "{err}");
}

#[test]
fn symlinks_are_kept_and_their_targets_included() {
    let dir = project();
    let t = load(&dir.path().join("granary.toml")).unwrap().tree;
    assert_eq!(t.get("/app/link"), Some(&Node::Symlink("server".into())));
    // A directory symlink leaving the mapped directory: kept, target resolved in the
    // package namespace (/app/../shared = /shared, found through the `/` map entry, which has
    // no /shared on this host), so it dangles and is reported.
    assert_eq!(t.get("/app/lib"), Some(&Node::Symlink("../shared".into())));

    // Mapped where it resolves: the target directory is included recursively.
    let toml = full_toml().replace(
        r#"{ to = "/app", from = "build" }"#,
        r#"{ to = "/app", from = "build" }, { to = "/shared", from = "shared" }"#,
    );
    write_toml(dir.path(), &toml);
    let src = load(&dir.path().join("granary.toml")).unwrap();
    assert_eq!(host_file(&src.tree, "/app/lib/data.txt"), Some(dir.path().join("shared/data.txt")));
    assert!(src.skipped.is_empty(), "{:?}", src.skipped);
}

#[test]
fn dangling_symlinks_in_included_directories_are_reported() {
    let dir = project();
    let src = load(&dir.path().join("granary.toml")).unwrap();
    assert_eq!(src.tree.get("/app/lib"), Some(&Node::Symlink("../shared".into())));
    assert!(src.skipped.iter().any(|s| s.path == "/app/lib" && s.reason.contains("not found")), "{:?}", src.skipped);
    let toml = full_toml().replace(r#"{ to = "/", from = "/" }"#, r#"{ to = "/", from = "/" }, { to = "/x", from = "/nonexistent" }"#);
    write_toml(dir.path(), &toml);
    std::os::unix::fs::symlink("/no/such/file", dir.path().join("build/dangling")).unwrap();
    let src = load(&dir.path().join("granary.toml")).unwrap();
    assert_eq!(src.tree.get("/app/dangling"), Some(&Node::Symlink("/no/such/file".into())));
    assert!(src.skipped.iter().any(|s| s.path == "/app/dangling"), "{:?}", src.skipped);
}

#[test]
fn etc_files_are_generated_never_read_from_the_host() {
    let dir = project();
    let fake_etc = dir.path().join("fake_etc");
    std::fs::create_dir_all(&fake_etc).unwrap();
    for f in ["passwd", "group", "hosts", "resolv.conf", "nsswitch.conf"] {
        std::fs::write(fake_etc.join(f), "HOST CONTENT").unwrap();
    }
    std::fs::write(fake_etc.join("app.conf"), "kept").unwrap();
    let toml = full_toml()
        .replace(r#"{ to = "/app", from = "build" }"#, r#"{ to = "/app", from = "build" }, { to = "/etc", from = "fake_etc" }"#)
        .replace(r#"include = ["/app"]"#, r#"include = ["/app", "/etc", "/etc/passwd"]"#);
    write_toml(dir.path(), &toml);
    let t = load(&dir.path().join("granary.toml")).unwrap().tree;
    let text = |p: &str| match t.get(p) {
        Some(Node::File { source: Source::Bytes(b), executable: false }) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("{p}: {other:?}"),
    };
    assert!(text("/etc/passwd").contains("app:x:1000:1000:app:/var:"));
    assert!(text("/etc/passwd").starts_with("root:x:0:0:") && text("/etc/passwd").contains("nobody:"));
    assert!(text("/etc/group").contains("app:x:1000:"));
    assert!(text("/etc/hosts").contains("127.0.0.1\tlocalhost sandbox") && text("/etc/hosts").contains("::1"));
    assert_eq!(text("/etc/nsswitch.conf").lines().filter(|l| !l.ends_with(": files")).count(), 0);
    assert!(text("/etc/resolv.conf").starts_with('#') && text("/etc/resolv.conf").contains("no DNS"));
    assert_eq!(host_file(&t, "/etc/app.conf"), Some(fake_etc.join("app.conf")));
    for d in ["/dev", "/tmp", "/var", "/proc"] {
        assert!(matches!(t.get(d), Some(Node::Dir(e)) if e.entries.is_empty()), "{d}");
    }
}

#[test]
fn mount_points_cannot_hold_files() {
    let dir = project();
    write_toml(dir.path(), &full_toml().replace(r#"include = ["/app"]"#, r#"include = ["/app", "/var/lib"]"#));
    let err = load(&dir.path().join("granary.toml")).unwrap_err();
    assert!(matches!(&err.problem, Problem::UnderMountPoint { mount, .. } if mount == "/var"), "{err}");
}

#[test]
fn special_files_are_skipped_in_directories_and_refused_by_name() {
    let dir = project();
    let fifo = dir.path().join("build/pipe");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let src = load(&dir.path().join("granary.toml")).unwrap();
    assert!(src.tree.get("/app/pipe").is_none());
    assert!(src.skipped.iter().any(|s| s.path == "/app/pipe" && s.reason.contains("fifo")), "{:?}", src.skipped);
    write_toml(dir.path(), &full_toml().replace(r#"include = ["/app"]"#, r#"include = ["/app/pipe"]"#));
    let err = load(&dir.path().join("granary.toml")).unwrap_err();
    assert!(matches!(err.problem, Problem::Special { kind: "a fifo", .. }), "{err}");
}

#[test]
fn non_utf8_names_are_an_error() {
    let dir = project();
    let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
    std::fs::write(dir.path().join("build").join(name), "x").unwrap();
    let err = load(&dir.path().join("granary.toml")).unwrap_err();
    assert!(matches!(err.problem, Problem::NonUtf8(_)), "{err}");
    assert!(err.to_string().contains("not UTF-8") && err.to_string().contains("hide"), "{err}");
}

#[test]
fn init_template_is_accepted_by_load() {
    let dir = tempfile::tempdir().unwrap();
    let text = init_template(&app_id(), "My \"App\"");
    write_toml(dir.path(), &text);
    write_exec(&dir.path().join("build/server"), "#!/bin/sh\nexec sleep 1\n");
    let src = load(&dir.path().join("granary.toml")).unwrap();
    assert_eq!(src.manifest.app_title, "My \"App\"");
    assert_eq!(src.manifest.roles.iter().filter(|r| r.default).count(), 1);
    assert!(host_file(&src.tree, "/app/server").is_some());
    // Every key is explained at least once, by a comment beside it or on the line above.
    let lines: Vec<&str> = text.lines().collect();
    let mut keys = std::collections::BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start().trim_start_matches("# ");
        let Some((key, _)) = t.split_once(" = ") else { continue };
        if key.contains(' ') || t.starts_with('{') {
            continue;
        }
        let explained = l.contains(" # ") || (i > 0 && lines[i - 1].trim_start().starts_with('#'));
        *keys.entry(key.to_owned()).or_insert(false) |= explained;
    }
    assert_eq!(keys.len(), 25, "every key of the format appears: {keys:?}");
    for (key, explained) in keys {
        assert!(explained, "key `{key}` is never explained");
    }
}

#[test]
fn bad_paths_in_files_are_refused() {
    let dir = project();
    write_toml(dir.path(), &full_toml().replace(r#"include = ["/app"]"#, r#"include = ["/app/../etc"]"#));
    let err = load(&dir.path().join("granary.toml")).unwrap_err();
    assert!(matches!(err.problem, Problem::BadPath(_)), "{err}");
    write_toml(dir.path(), &full_toml().replace(r#"hide = ["/app/.git"]"#, r#"hide = ["app/.git"]"#));
    assert!(matches!(load(&dir.path().join("granary.toml")).unwrap_err().problem, Problem::BadPath(_)));
    let missing = load(Path::new("/nonexistent/granary.toml")).unwrap_err();
    assert!(matches!(missing.problem, Problem::Read(_)) && missing.to_string().starts_with("/nonexistent/granary.toml"));
}

#[test]
fn a_file_mapped_to_a_deep_path_implies_its_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    write_exec(&dir.path().join("out/tool"), "#!/app/bin/tool\n");
    std::fs::write(dir.path().join("notes.txt"), "n").unwrap();
    let files = r#"map = [{ to = "/app/bin/tool", from = "out/tool" }, { to = "/app/doc/notes.txt", from = "notes.txt" }]
include = ["/app"]"#;
    let toml = write_toml(dir.path(), &minimal_toml("/app/bin/tool", files));
    let t = load(&toml).unwrap_or_else(|e| panic!("{e}")).tree;
    assert!(matches!(t.get("/app/bin/tool"), Some(Node::File { executable: true, .. })));
    assert!(matches!(t.get("/app/doc/notes.txt"), Some(Node::File { executable: false, .. })));
    // Naming the implied directory as a command is still an error, not a crash.
    let toml = write_toml(dir.path(), &minimal_toml("/app/bin", files));
    assert!(load(&toml).is_err());
}
