//! The commented `granary.toml` that `granary init` writes.

/// A complete, commented `granary.toml` for a new app, accepted by [`crate::source::load`]
/// once the app's files exist (`build/server` here). `app_id` comes from `granary keygen`.
pub fn init_template(app_id: &str, title: &str) -> String {
    TEMPLATE.replace("{APP_ID}", &quote(app_id)).replace("{TITLE}", &quote(title))
}

/// A TOML basic string holding `s`.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const TEMPLATE: &str = r#"# granary.toml: how `granary pack` builds this app's package.
# Package paths are absolute paths as the app sees them inside its grain (such as
# /app/server); host paths are paths on the machine that packs. Unknown keys are an error.

[app]
# The app's identity: the public key `granary keygen` made. Packages are signed with its
# secret key; never change it, or installed grains cannot upgrade.
id = {APP_ID}
# The name users see.
title = {TITLE}
# A whole number that must increase with every release you publish.
version = 1
# The version users see (optional).
marketing_version = "0.1.0"
# Grains created by a version below this cannot upgrade to this package (optional, 0 = all).
min_upgradable_version = 0
# The app's whole environment. Nothing is inherited from the host or the platform.
# LD_LIBRARY_PATH here is also searched when packing finds libraries.
environment = { HOME = "/var", PATH = "/usr/bin:/bin" }
# Runs when an existing grain starts again. argv[0] is an executable package path.
continue_command = ["/app/server"]

# Each action is a "new grain" button. At least one is required.
[[actions]]
# The button text.
title = "New document"
# What one grain is called.
noun = "document"
# Runs once, when the grain is created. argv[0] is an executable package path.
command = ["/app/server", "--new"]

# Optional: leave out for an app that serves no web pages.
[http]
# The TCP port the app listens on at 127.0.0.1 inside its grain.
port = 8000
# Optional: a path prefix the app serves its API under, to holders of API tokens.
# api_path = "/api"

# Optional: what a user may be allowed to do. A permission's id is its position in this
# list, so never reorder or delete entries; set `obsolete = true` instead.
[[permissions]]
name = "edit"                 # unique among permissions and roles
title = "Edit"                # shown to users
description = "Change the document."   # optional
obsolete = false              # optional

# Optional: named sets of permissions offered when sharing. If there are roles, exactly one
# has `default = true`.
[[roles]]
name = "viewer"               # unique among permissions and roles
title = "Viewer"              # shown to users
description = "Can read the document."   # optional
permissions = []              # permission names this role grants
obsolete = false              # optional
default = false               # optional

[[roles]]
name = "editor"
title = "Editor"
description = "Can read and change the document."
permissions = ["edit"]
default = true

# Optional: HTTP APIs of this app that other grains may be granted through the powerbox.
# A grant reaches only requests below path_prefix. Uncomment to offer one.
# [[powerbox.provides]]
# api = "notes"               # unique; 1-40 of a-z, 0-9, `-`; the name requests ask for
# title = "Notes"             # shown in the powerbox picker
# path_prefix = "/api/"       # starts and ends with `/`, no `..` or `//`
# permissions = ["edit"]      # what the person granting must hold on this grain

# Optional: shown in the app list and app market. Every key is optional.
[metadata]
# An .svg or .png file, relative to this file.
# icon = "icon.svg"
description = "What the app does, in a sentence or two."
license = "Apache-2.0"        # the app's license, as an SPDX expression
author = "Your Name"          # who makes the app
website = "https://example.org"   # where to learn more about it

[files]
# Where package paths are found on the host, tried in order: the first entry whose `to` is
# the path or a parent of it, and that has the file, wins. `from` is relative to this
# file's directory, or absolute. Here /app comes from ./build and everything else (the
# libraries and programs the app needs) from the host's own root.
map = [
  { to = "/app", from = "build" },
  { to = "/", from = "/" },
]
# Package paths always included, directories with everything in them. Also included
# without being listed: argv[0] of every command, and what each included program needs
# (its dynamic loader and libraries, a script's interpreter), symlinks kept as symlinks.
include = ["/app"]
# Package paths never included, and never entered.
hide = ["/app/.git"]
# Whatever the map says, /etc/passwd, /etc/group, /etc/hosts, /etc/nsswitch.conf and
# /etc/resolv.conf are generated, and /dev, /proc, /tmp and /var are empty directories the
# sandbox mounts over (/var is the grain's own storage).
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_quoted() {
        assert_eq!(quote("a \"b\" \\ c\n"), r#""a \"b\" \\ c\u000A""#);
        let t = init_template("x", "Say \"hi\"");
        assert!(t.contains(r#"title = "Say \"hi\"""#));
        assert!(!t.contains("{APP_ID}") && !t.contains("{TITLE}"));
    }
}
