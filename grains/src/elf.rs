//! What an included program needs to run: the dynamic loader and shared libraries of an ELF
//! file, and the interpreter of a script.
//!
//! For every included ELF file, its `PT_INTERP` (the dynamic loader) is included, and each
//! `DT_NEEDED` library is searched for like the loader does, and the first compatible one
//! (same class, byte order and machine) is included, recursively, with symlinks kept as the
//! [`crate::source`] rules say. The search path, all package paths looked up through
//! `[files] map`:
//!
//! 1. the file's `DT_RPATH`, if it has no `DT_RUNPATH` (the rpath of the objects that loaded
//!    it is not searched);
//! 2. `LD_LIBRARY_PATH` from `[app] environment`;
//! 3. the file's `DT_RUNPATH`;
//! 4. the directories of `/etc/ld.so.conf` and the files it `include`s (globs `*` and `?` in
//!    the last component);
//! 5. the default directories: `/lib/<multiarch>`, `/usr/lib/<multiarch>` (such as
//!    `x86_64-linux-gnu`), `/lib`, `/usr/lib`, and for 64-bit files `/lib64`, `/usr/lib64`.
//!
//! `$ORIGIN` (and `${ORIGIN}`) in a run path is the directory of the file's real package path;
//! run path entries with other `$` tokens are not searched. A name containing `/` is a path.
//! Note that the loader inside the grain has no `/etc/ld.so.cache` unless one is included, so
//! libraries found only through step 4 in a directory outside step 5 also need
//! `LD_LIBRARY_PATH`.
//!
//! An executable file starting with `#!` gets its interpreter included (and that, in turn, its
//! loader and libraries). For `#!/usr/bin/env python3` that is `/usr/bin/env` only: the
//! program env runs is not resolved, so include it yourself. A script found in an included
//! directory whose interpreter is missing is kept and reported as skipped; a needed one (a
//! command's argv\[0\]) is an error. Likewise an ELF file in an included directory that cannot
//! be parsed is kept and reported as skipped; a needed one is an error.

use crate::collect::{join, Collector, Found, Pending};
use crate::source::Problem;
use object::elf::{self, FileHeader32, FileHeader64};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::Endianness;

/// What the dynamic loader needs to know about an ELF file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfInfo {
    pub is_64: bool,
    pub big_endian: bool,
    pub machine: u16,
    /// `PT_INTERP`: the dynamic loader's path.
    pub interpreter: Option<String>,
    /// `DT_NEEDED` entries, in order.
    pub needed: Vec<String>,
    pub rpath: Vec<String>,
    pub runpath: Vec<String>,
}

/// Parses the parts of an ELF file that name what it needs.
pub fn parse(data: &[u8]) -> Result<ElfInfo, String> {
    match data.get(4) {
        Some(1) => parse_as::<FileHeader32<Endianness>>(data),
        Some(2) => parse_as::<FileHeader64<Endianness>>(data),
        _ => Err("unknown ELF class".into()),
    }
}

fn parse_as<H: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<ElfInfo, String> {
    let h = H::parse(data).map_err(|e| e.to_string())?;
    let endian = h.endian().map_err(|e| e.to_string())?;
    let phdrs = h.program_headers(endian, data).map_err(|e| e.to_string())?;
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| "a name that is not UTF-8".to_string());
    let mut info = ElfInfo {
        is_64: h.is_type_64(),
        big_endian: endian == Endianness::Big,
        machine: h.e_machine(endian).0,
        ..Default::default()
    };
    let mut dynamic = None;
    for ph in phdrs {
        if let Some(i) = ph.interpreter(endian, data).map_err(|e| e.to_string())? {
            info.interpreter = Some(text(i)?);
        }
        if let Some(d) = ph.dynamic(endian, data).map_err(|e| e.to_string())? {
            dynamic = Some(d);
        }
    }
    let Some(dynamic) = dynamic else { return Ok(info) };
    let entries: Vec<(elf::DynamicTag, u64)> = dynamic
        .iter()
        .map(|d| (d.tag(endian), d.val(endian)))
        .take_while(|&(tag, _)| tag != elf::DT_NULL)
        .collect();
    let find = |tag: elf::DynamicTag| entries.iter().find(|e| e.0 == tag).map(|e| e.1);
    let (Some(strtab), Some(strsz)) = (find(elf::DT_STRTAB), find(elf::DT_STRSZ)) else {
        return if entries.iter().any(|e| e.0 == elf::DT_NEEDED) {
            Err("a dynamic section without a string table".into())
        } else {
            Ok(info)
        };
    };
    // DT_STRTAB is an address: find the loaded segment that holds it.
    let strings = phdrs
        .iter()
        .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
        .find_map(|ph| ph.data_range(endian, data, strtab, strsz).ok().flatten())
        .ok_or("a string table outside its segments")?;
    let string = |off: u64| -> Result<String, String> {
        let tail = strings.get(off as usize..).ok_or("a name outside the string table")?;
        let end = tail.iter().position(|&b| b == 0).ok_or("an unterminated name")?;
        text(&tail[..end])
    };
    let split = |s: String| s.split(':').filter(|d| !d.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    for &(tag, val) in &entries {
        match tag {
            elf::DT_NEEDED => info.needed.push(string(val)?),
            elf::DT_RPATH => info.rpath.extend(split(string(val)?)),
            elf::DT_RUNPATH => info.runpath.extend(split(string(val)?)),
            _ => {}
        }
    }
    Ok(info)
}

/// The Debian multiarch directory name for an ELF machine, if there is one.
pub fn multiarch(info: &ElfInfo) -> Option<&'static str> {
    Some(match (elf::Machine(info.machine), info.is_64, info.big_endian) {
        (elf::EM_X86_64, true, _) => "x86_64-linux-gnu",
        (elf::EM_X86_64, false, _) => "x86_64-linux-gnux32",
        (elf::EM_386, _, _) => "i386-linux-gnu",
        (elf::EM_AARCH64, true, false) => "aarch64-linux-gnu",
        (elf::EM_ARM, false, false) => "arm-linux-gnueabihf",
        (elf::EM_RISCV, true, _) => "riscv64-linux-gnu",
        (elf::EM_PPC64, true, false) => "powerpc64le-linux-gnu",
        (elf::EM_S390, true, _) => "s390x-linux-gnu",
        (elf::EM_LOONGARCH, true, _) => "loongarch64-linux-gnu",
        _ => return None,
    })
}

/// The interpreter path of a `#!` line, if the line names one.
pub fn shebang(head: &[u8]) -> Option<String> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = std::str::from_utf8(line).ok()?;
    line.split_ascii_whitespace().next().map(str::to_owned)
}

/// Does a glob pattern with `*` and `?` match `name` (entirely)?
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_match(&pattern[1..], name) || (!name.is_empty() && glob_match(pattern, &name[1..])),
        (Some(b'?'), Some(_)) => glob_match(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Splits an `ld.so.conf` text into its library directories and its `include` patterns.
pub fn parse_ld_so_conf(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut dirs, mut includes) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix("include").filter(|r| r.starts_with([' ', '\t'])) {
            includes.extend(rest.split_whitespace().map(str::to_owned));
        } else if line.starts_with("hwcap") && line[5..].starts_with([' ', '\t']) {
            continue;
        } else {
            for d in line.split([' ', '\t', ':', ',']).filter(|d| !d.is_empty()) {
                // Old syntax `DIR=TYPE`: the type is ignored.
                dirs.push(d.split('=').next().unwrap_or(d).to_owned());
            }
        }
    }
    (dirs, includes)
}

/// A library file's ELF identity: (64-bit, big-endian, machine), if it is ELF at all.
fn identity(head: &[u8]) -> Option<(bool, bool, u16)> {
    if head.len() < 20 || !head.starts_with(b"\x7fELF") {
        return None;
    }
    let big = head[5] == 2;
    let m = [head[18], head[19]];
    Some((head[4] == 2, big, if big { u16::from_be_bytes(m) } else { u16::from_le_bytes(m) }))
}

impl Collector<'_> {
    /// The directories of `/etc/ld.so.conf` (read through the map), once.
    fn ld_so_conf_dirs(&mut self) -> Result<Vec<String>, Problem> {
        if let Some(d) = &self.ld_so_conf {
            return Ok(d.clone());
        }
        let mut dirs = Vec::new();
        let mut files = vec!["/etc/ld.so.conf".to_owned()];
        let mut seen = std::collections::HashSet::new();
        while let Some(file) = files.pop() {
            if !seen.insert(file.clone()) || seen.len() > 256 {
                continue;
            }
            let Some(bytes) = self.read_package_file(&file)? else { continue };
            let (d, includes) = parse_ld_so_conf(&String::from_utf8_lossy(&bytes));
            dirs.extend(d.into_iter().filter(|d| d.starts_with('/')));
            let parent = file.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            let mut found = Vec::new();
            for pat in includes {
                let pat = if pat.starts_with('/') { pat } else { format!("{parent}/{pat}") };
                let (dir, name) = pat.rsplit_once('/').unwrap_or(("", &pat));
                let parts: Vec<String> = dir.split('/').filter(|c| !c.is_empty()).map(str::to_owned).collect();
                let real = match self.resolve(&join(&parts))?.outcome {
                    Ok((real, Found::Host { meta, .. })) if meta.is_dir() => real,
                    _ => continue,
                };
                let real_parts: Vec<String> = real.split('/').filter(|c| !c.is_empty()).map(str::to_owned).collect();
                for entry in self.list_dir(&real_parts)? {
                    if glob_match(name.as_bytes(), entry.as_bytes()) {
                        found.push(format!("{}/{entry}", real.trim_end_matches('/')));
                    }
                }
            }
            // `files` is a stack: push in reverse so files are read in sorted order.
            files.extend(found.into_iter().rev());
        }
        self.ld_so_conf = Some(dirs.clone());
        Ok(dirs)
    }

    /// Includes an ELF file's loader and libraries (which are then inspected in turn).
    pub(crate) fn add_elf_dependencies(&mut self, path: &str, info: &ElfInfo) -> Result<(), Problem> {
        if let Some(interp) = &info.interpreter {
            self.need_file(interp, &format!("the dynamic loader of {path}"))?;
        }
        if info.needed.is_empty() {
            return Ok(());
        }
        let origin = path.rsplit_once('/').map(|(d, _)| if d.is_empty() { "/" } else { d }).unwrap_or("/");
        let expand = |dirs: &[String]| -> Vec<String> {
            dirs.iter()
                .map(|d| d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
                .filter(|d| d.starts_with('/') && !d.contains('$'))
                .collect()
        };
        let mut search = Vec::new();
        if info.runpath.is_empty() {
            search.extend(expand(&info.rpath));
        }
        search.extend(self.library_path.clone());
        search.extend(expand(&info.runpath));
        search.extend(self.ld_so_conf_dirs()?);
        if let Some(arch) = multiarch(info) {
            search.push(format!("/lib/{arch}"));
            search.push(format!("/usr/lib/{arch}"));
        }
        search.extend(["/lib".to_owned(), "/usr/lib".to_owned()]);
        if info.is_64 {
            search.extend(["/lib64".to_owned(), "/usr/lib64".to_owned()]);
        }
        let mut unique = Vec::new();
        for d in search {
            if !unique.contains(&d) {
                unique.push(d);
            }
        }
        for lib in &info.needed {
            let why = format!("a library of {path}");
            if lib.contains('/') {
                self.need_file(lib, &why)?;
                continue;
            }
            if !self.find_library(lib, &unique, info, &why)? {
                return Err(Problem::MissingLibrary {
                    binary: path.to_owned(),
                    library: lib.clone(),
                    searched: unique.join(", "),
                });
            }
        }
        Ok(())
    }

    /// Includes the first compatible `lib` in `dirs`; false if there is none.
    fn find_library(&mut self, lib: &str, dirs: &[String], info: &ElfInfo, why: &str) -> Result<bool, Problem> {
        let want = (info.is_64, info.big_endian, info.machine);
        for dir in dirs {
            let path = format!("{}/{lib}", dir.trim_end_matches('/'));
            let r = self.resolve(&path)?;
            let Ok((_, Found::Host { host, meta })) = &r.outcome else { continue };
            if !meta.is_file() {
                continue;
            }
            let mut head = [0u8; 20];
            let ok = std::fs::File::open(host)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                .is_ok();
            if ok && identity(&head) == Some(want) {
                self.place_found(&path, r, why)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Includes the interpreter named by a script's `#!` line.
    pub(crate) fn add_interpreter(&mut self, script: &Pending, head: &[u8]) -> Result<(), Problem> {
        let Some(interp) = shebang(head) else { return Ok(()) };
        if !interp.starts_with('/') {
            if !script.needed {
                self.skip(&script.path, format!("its interpreter `{interp}` is not an absolute path"));
                return Ok(());
            }
            return Err(Problem::BadInterpreter { script: script.path.clone(), interpreter: interp });
        }
        let why = format!("the interpreter of script {}", script.path);
        if script.needed {
            return self.need_file(&interp, &why);
        }
        match self.resolve(&interp)?.outcome {
            Ok((_, Found::Host { meta, .. })) if meta.is_file() => self.need_file(&interp, &why),
            _ => {
                self.skip(&script.path, format!("its interpreter {interp} is not in the package"));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ld_so_conf_lines() {
        let (dirs, inc) = parse_ld_so_conf(
            "# comment\ninclude /etc/ld.so.conf.d/*.conf\n/usr/local/lib  # trailing\n/opt/a:/opt/b,/opt/c=libc5\nhwcap 0 nosegneg\n",
        );
        assert_eq!(inc, vec!["/etc/ld.so.conf.d/*.conf"]);
        assert_eq!(dirs, vec!["/usr/local/lib", "/opt/a", "/opt/b", "/opt/c"]);
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*.conf", b"libc.conf"));
        assert!(!glob_match(b"*.conf", b"libc.conf.bak"));
        assert!(glob_match(b"x?.c*", b"x1.conf"));
        assert!(!glob_match(b"x?.c", b"x.c"));
    }

    #[test]
    fn shebang_lines() {
        assert_eq!(shebang(b"#!/bin/sh\necho"), Some("/bin/sh".into()));
        assert_eq!(shebang(b"#! /usr/bin/env python3 -u\n"), Some("/usr/bin/env".into()));
        assert_eq!(shebang(b"#!\n"), None);
        assert_eq!(shebang(b"echo"), None);
    }

    #[test]
    fn parses_python_like_ldd_sees_it() {
        let data = std::fs::read("/usr/bin/python3").expect("this test needs /usr/bin/python3");
        let info = parse(&data).unwrap();
        assert!(info.interpreter.as_deref().is_some_and(|i| i.contains("ld-linux")), "{info:?}");
        assert!(info.needed.iter().any(|n| n.starts_with("libc.so")), "{info:?}");
        assert!(info.needed.iter().any(|n| n.starts_with("libz.so")), "{info:?}");
        assert_eq!(identity(&data[..20]), Some((info.is_64, info.big_endian, info.machine)));
        assert!(multiarch(&info).is_some());
        assert!(parse(b"\x7fELF\x03").is_err());
        assert!(parse(&data[..64]).is_err(), "a truncated file must not parse");
    }
}
