//! The test mail the dashboard sends: checked fields, made into an RFC 5322 message. `From`
//! and `Sender` are left out: the platform sets them to the address the person granted.

/// Longest subject (characters) and body (bytes).
const MAX_SUBJECT: usize = 200;
const MAX_BODY: usize = 64 * 1024;

/// One address, `local@domain`, without spaces, commas, angle brackets or quotes.
pub fn check_address(to: &str) -> Result<&str, String> {
    let to = to.trim();
    let ok = to.len() <= 254
        && to.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && to.bytes().all(|b| b.is_ascii_graphic() && !b",<>\"()[];:\\".contains(&b));
    if ok { Ok(to) } else { Err(format!("`{to}` is not one mail address such as alice@example.org")) }
}

/// RFC 2047 encoded-word for a header value that is not plain ASCII.
fn encode_header(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.to_owned();
    }
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            b64.push(if k <= c.len() { ABC[(n >> (18 - 6 * k) & 63) as usize] as char } else { '=' });
        }
    }
    format!("=?UTF-8?B?{b64}?=")
}

/// The message for `to`, with `subject` (one line) and `body` (lines end in CRLF).
pub fn message(to: &str, subject: &str, body: &str, now: u64) -> Result<Vec<u8>, String> {
    let to = check_address(to)?;
    let subject = subject.replace(['\r', '\n'], " ");
    let subject = subject.trim();
    if subject.is_empty() {
        return Err("the subject is empty; write one".into());
    }
    if subject.chars().count() > MAX_SUBJECT {
        return Err(format!("the subject is longer than {MAX_SUBJECT} characters; shorten it"));
    }
    if body.len() > MAX_BODY {
        return Err(format!("the body is over {} KiB; shorten it", MAX_BODY / 1024));
    }
    let body = body.replace("\r\n", "\n").replace('\r', "\n").replace('\n', "\r\n");
    Ok(format!(
        "To: {to}\r\nSubject: {}\r\nDate: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n",
        encode_header(subject),
        granary_app_kit::rfc5322(now)
    )
    .into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_one_plain_address() {
        assert_eq!(check_address(" a.b+c@example.org ").unwrap(), "a.b+c@example.org");
        for bad in ["", "a", "@x", "a@", "a@b@c", "a b@c", "a@b,c@d", "<a@b>", "a@b\r\nBcc: x@y"] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_are_rfc_5322_with_encoded_subjects() {
        let m = String::from_utf8(message("bob@example.org", "Hi\nthere", "line 1\nline 2", 0).unwrap()).unwrap();
        assert!(m.starts_with("To: bob@example.org\r\nSubject: Hi there\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n"), "{m}");
        assert!(m.ends_with("\r\n\r\nline 1\r\nline 2\r\n"), "{m}");
        assert!(!m.contains("From:"));
        let m = String::from_utf8(message("bob@example.org", "Grüße", "", 0).unwrap()).unwrap();
        assert!(m.contains("Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"), "{m}");
        assert!(message("bob@example.org", " ", "x", 0).unwrap_err().contains("subject is empty"));
        assert!(message("bob@example.org", "s", &"x".repeat(MAX_BODY + 1), 0).unwrap_err().contains("over 64 KiB"));
        assert!(message("nobody", "s", "x", 0).unwrap_err().contains("not one mail address"));
    }
}
