//! The pieces Granary's powerbox sample apps share, standard library only: a small HTTP/1.1
//! server and client ([`http`]), a JSON value type with a parser and writer ([`json`]),
//! crash-safe state files under `/var` ([`store`]), and the page script that asks Granary's
//! shell for the powerbox and other dialogs ([`SHELL_RPC_JS`]).
//!
//! The apps are small on purpose: a grain's app only needs to listen on 127.0.0.1, read a
//! request with its `X-Granary-*` headers, and talk to the bridge's local API at
//! `$GRANARY_API` / `$HTTP_PROXY` (SPEC.md, "Powerbox").

pub mod http;
pub mod json;
pub mod store;

/// Page JavaScript for asking Granary's shell, the grain frame's parent, over postMessage:
/// `askShell({name: {...}})` and `powerboxRequest(descriptor, saveLabel)`, each a promise of
/// the shell's reply (matched by rpcId), and `$(id)`. Needs an element with id `outside`.
pub const SHELL_RPC_JS: &str = include_str!("shell_rpc.js");

/// `page` with its `/*SHELL_RPC*/` marker (inside a `<script>`) replaced by [`SHELL_RPC_JS`].
pub fn with_shell_rpc(page: &str) -> String {
    assert!(page.contains(SHELL_RPC_MARKER), "the page has no {SHELL_RPC_MARKER} marker");
    page.replacen(SHELL_RPC_MARKER, SHELL_RPC_JS, 1)
}

const SHELL_RPC_MARKER: &str = "/*SHELL_RPC*/";

/// `seconds` since the Unix epoch as RFC 3339 UTC (`2026-11-29T12:30:05Z`).
pub fn rfc3339(seconds: u64) -> String {
    let (y, m, d, rem) = civil(seconds);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// `seconds` since the Unix epoch as an RFC 5322 date (`Sun, 29 Nov 2026 12:30:05 +0000`).
pub fn rfc5322(seconds: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, m, d, rem) = civil(seconds);
    let wd = DAYS[(seconds / 86_400 % 7) as usize];
    format!("{wd}, {d:02} {} {y:04} {:02}:{:02}:{:02} +0000", MONTHS[m as usize - 1], rem / 3600, rem / 60 % 60, rem % 60)
}

/// (year, month 1-12, day 1-31, seconds into the day) of `seconds` since the Unix epoch.
fn civil(seconds: u64) -> (i64, i64, i64, u64) {
    let (days, rem) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem)
}

/// Seconds since the Unix epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `s` escaped for HTML text and attribute values.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_199), "2023-12-31T23:59:59Z");
        assert_eq!(rfc3339(1_709_208_000), "2024-02-29T12:00:00Z");
        assert_eq!(rfc5322(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(1_709_208_000), "Thu, 29 Feb 2024 12:00:00 +0000");
        assert_eq!(rfc5322(1795955405), "Sun, 29 Nov 2026 12:30:05 +0000");
    }

    #[test]
    fn the_shell_script_replaces_the_marker_once() {
        let page = with_shell_rpc("<script>\"use strict\";\n/*SHELL_RPC*/\nmain();</script>");
        assert!(page.starts_with("<script>\"use strict\";\n// Asking Granary's shell"));
        assert!(page.ends_with("}\n\nmain();</script>"));
        assert!(!page.contains("/*SHELL_RPC*/"));
    }

    #[test]
    #[should_panic(expected = "no /*SHELL_RPC*/ marker")]
    fn a_page_without_the_marker_is_a_bug() {
        with_shell_rpc("<script></script>");
    }

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(html(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
