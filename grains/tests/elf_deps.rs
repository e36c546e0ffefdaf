//! ELF and script dependency resolution against this machine's real files.

mod common;

use common::*;
use granary_grains::source::{load, Problem};
use granary_grains::tree::Node;
use std::path::Path;
use std::process::Command;

#[test]
fn python3_gets_its_loader_and_every_library_ldd_lists() {
    let dir = tempfile::tempdir().unwrap();
    let toml = minimal_toml("/usr/bin/python3", r#"map = [ { to = "/", from = "/" } ]"#);
    let src = load(&write_toml(dir.path(), &toml)).unwrap();
    let t = &src.tree;
    assert_eq!(t.get("/usr/bin/python3"), Some(&Node::Symlink("python3.11".into())));
    assert!(matches!(t.get("/usr/bin/python3.11"), Some(Node::File { executable: true, .. })));
    let libs = ldd("/usr/bin/python3");
    assert!(libs.iter().any(|l| l.contains("ld-linux")) && libs.iter().any(|l| l.contains("libc.so")), "{libs:?}");
    for lib in &libs {
        let host = host_file(t, lib).unwrap_or_else(|| panic!("{lib} does not resolve in the tree"));
        assert_eq!(host.canonicalize().unwrap(), Path::new(lib).canonicalize().unwrap());
    }
    // Merged /usr: the directory symlinks are kept so the loader's paths resolve.
    assert_eq!(t.get("/lib"), Some(&Node::Symlink("usr/lib".into())));
    assert_eq!(t.get("/lib64"), Some(&Node::Symlink("usr/lib64".into())));
    // Nothing that was not needed (the /usr/lib/python3.11 library was not included).
    assert!(t.get("/usr/lib/python3.11").is_none());
}

#[test]
fn env_scripts_get_env_but_not_what_env_runs() {
    let dir = tempfile::tempdir().unwrap();
    write_exec(&dir.path().join("build/run"), "#!/usr/bin/env python3\nprint(1)\n");
    let files = r#"map = [ { to = "/app", from = "build" }, { to = "/", from = "/" } ]"#;
    let src = load(&write_toml(dir.path(), &minimal_toml("/app/run", files))).unwrap();
    assert!(host_file(&src.tree, "/usr/bin/env").is_some());
    for lib in ldd("/usr/bin/env") {
        assert!(host_file(&src.tree, &lib).is_some(), "{lib}");
    }
    assert!(src.tree.get("/usr/bin/python3").is_none());
}

#[test]
fn a_script_whose_interpreter_is_missing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_exec(&dir.path().join("build/run"), "#!/usr/local/bin/nonexistent-interpreter\n");
    write_exec(&dir.path().join("build/tool"), "#!/usr/local/bin/nonexistent-interpreter\n");
    // /app is walked before the commands are added: the command must still be checked.
    let files = r#"map = [ { to = "/app", from = "build" }, { to = "/", from = "/" } ]
include = ["/app"]"#;
    let err = load(&write_toml(dir.path(), &minimal_toml("/app/run", files))).unwrap_err();
    assert!(matches!(&err.problem, Problem::NotFound { why, .. } if why.contains("interpreter of script /app/run")), "{err}");
    // A script that is only in an included directory is kept, and reported.
    let src = load(&write_toml(dir.path(), &minimal_toml("/usr/bin/python3", files))).unwrap();
    assert!(src.tree.get("/app/run").is_some());
    assert!(src.skipped.iter().any(|s| s.path == "/app/tool" && s.reason.contains("interpreter")), "{:?}", src.skipped);
}

#[test]
fn missing_loader_and_libraries_name_the_binary_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::copy("/usr/bin/python3.11", root.join("usr/bin/prog")).unwrap();
    let toml = minimal_toml("/usr/bin/prog", r#"map = [ { to = "/", from = "root" } ]"#);
    let path = write_toml(dir.path(), &toml);
    let err = load(&path).unwrap_err();
    assert!(matches!(&err.problem, Problem::NotFound { why, .. } if why == "the dynamic loader of /usr/bin/prog"), "{err}");

    let loader = ldd("/usr/bin/python3").into_iter().find(|l| l.contains("ld-linux")).unwrap();
    let at = root.join(loader.trim_start_matches('/'));
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::copy(&loader, &at).unwrap();
    let err = load(&path).unwrap_err();
    match &err.problem {
        Problem::MissingLibrary { binary, library, searched } => {
            assert_eq!(binary, "/usr/bin/prog");
            assert!(library.starts_with("lib"), "{library}");
            assert!(searched.contains("/usr/lib/x86_64-linux-gnu") || searched.contains("/usr/lib"), "{searched}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("[files] include or map"), "{err}");
}

/// Compiles `libhello.so` and a program using it, with `flags` added to the program's link.
fn compile(dir: &Path, lib_dir: &str, flags: &[&str]) {
    let src = dir.join("c");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello.c"), "int hello(void) { return 42; }\n").unwrap();
    std::fs::write(src.join("main.c"), "int hello(void);\nint main(void) { return hello() == 42 ? 0 : 1; }\n").unwrap();
    let lib = dir.join(lib_dir);
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(dir.join("app/bin")).unwrap();
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(lib.join("libhello.so"))
        .arg(src.join("hello.c"))
        .status()
        .expect("this test needs a C compiler (cc)");
    assert!(ok.success());
    let ok = Command::new("cc")
        .arg("-o")
        .arg(dir.join("app/bin/prog"))
        .arg(src.join("main.c"))
        .arg(format!("-L{}", lib.display()))
        .arg("-lhello")
        .args(flags)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn runpath_with_origin_is_searched() {
    let dir = tempfile::tempdir().unwrap();
    compile(dir.path(), "app/lib", &["-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib"]);
    let files = r#"map = [ { to = "/app", from = "app" }, { to = "/", from = "/" } ]"#;
    let path = write_toml(dir.path(), &minimal_toml("/app/bin/prog", files));
    let src = load(&path).unwrap();
    assert_eq!(host_file(&src.tree, "/app/lib/libhello.so"), Some(dir.path().join("app/lib/libhello.so")));

    std::fs::remove_file(dir.path().join("app/lib/libhello.so")).unwrap();
    let err = load(&path).unwrap_err();
    assert!(
        matches!(&err.problem, Problem::MissingLibrary { library, searched, .. }
            if library == "libhello.so" && searched.starts_with("/app/bin/../lib")),
        "{err}"
    );
}

#[test]
fn ld_library_path_and_ld_so_conf_includes_are_searched() {
    let dir = tempfile::tempdir().unwrap();
    compile(dir.path(), "app/other", &[]);
    let files = r#"map = [ { to = "/app", from = "app" }, { to = "/", from = "/" } ]"#;
    let toml = minimal_toml("/app/bin/prog", files);
    let with_env = toml.replace("version = 1\n", "version = 1\nenvironment = { LD_LIBRARY_PATH = \"/app/other\" }\n");
    let src = load(&write_toml(dir.path(), &with_env)).unwrap();
    assert!(host_file(&src.tree, "/app/other/libhello.so").is_some());
    assert!(matches!(load(&write_toml(dir.path(), &toml)).unwrap_err().problem, Problem::MissingLibrary { .. }));

    // The same library found through an ld.so.conf that includes a glob of files.
    std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
    std::fs::write(dir.path().join("ld.so.conf"), "include /etc/ld.so.conf.d/*.conf\n").unwrap();
    std::fs::write(dir.path().join("conf.d/app.conf"), "# mine\n/app/other\n").unwrap();
    std::fs::write(dir.path().join("conf.d/other.txt"), "/nonexistent\n").unwrap();
    let files = r#"map = [ { to = "/app", from = "app" }, { to = "/etc/ld.so.conf", from = "ld.so.conf" },
        { to = "/etc/ld.so.conf.d", from = "conf.d" }, { to = "/", from = "/" } ]"#;
    let src = load(&write_toml(dir.path(), &minimal_toml("/app/bin/prog", files))).unwrap();
    assert!(host_file(&src.tree, "/app/other/libhello.so").is_some());
    assert!(src.tree.get("/etc/ld.so.conf").is_none(), "reading ld.so.conf does not include it");
}

#[test]
fn broken_elf_files_are_an_error_when_needed_and_reported_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    write_exec(&dir.path().join("build/bad"), "\x7fELF\x02\x01 truncated");
    write_exec(&dir.path().join("build/run"), "#!/bin/sh\n");
    let files = r#"map = [ { to = "/app", from = "build" }, { to = "/", from = "/" } ]
include = ["/app"]"#;
    let src = load(&write_toml(dir.path(), &minimal_toml("/app/run", files))).unwrap();
    assert!(src.skipped.iter().any(|s| s.path == "/app/bad" && s.reason.contains("ELF")), "{:?}", src.skipped);
    let err = load(&write_toml(dir.path(), &minimal_toml("/app/bad", files))).unwrap_err();
    assert!(matches!(&err.problem, Problem::Elf { path, .. } if path == "/app/bad"), "{err}");
}
