//! Powerbox descriptors (`powerbox.capnp`'s `PowerboxDescriptor`), written by hand as a
//! single-segment Cap'n Proto message, packed, then base64url without padding: the form a
//! `powerboxRequest` query carries (SPEC.md, "Descriptors and matching"). Each descriptor
//! here has one tag: an interface type id and, as its value, an `HttpApi` or `MailAddress`.
//! The tests decode them with the capnp library and the generated schema.

/// `WebSession` (web-session.capnp): the capability is an HTTP API.
pub const WEB_SESSION_ID: u64 = 0xd5d7_a127_1934_2d3b;
/// `MailSender` (mail.capnp): the capability sends mail.
pub const MAIL_SENDER_ID: u64 = 0x9302_78c5_2e31_af45;

/// What a request asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Want<'a> {
    /// `WebSession` + `HttpApi{apiName}`: an API a grain's app provides.
    GrainApi(&'a str),
    /// `WebSession` + `HttpApi{origin}`: an outside origin, through the HTTP driver.
    Origin(&'a str),
    /// `MailSender` + `MailAddress{}`: any address the person may grant.
    MailSender,
}

/// Words of a single-segment message, with helpers to lay out pointers.
struct Segment(Vec<u64>);

impl Segment {
    fn alloc(&mut self, words: usize) -> usize {
        let at = self.0.len();
        self.0.resize(at + words, 0);
        at
    }

    /// Offset field (30-bit signed, in words from the end of the pointer) of a pointer at `from`.
    fn offset(from: usize, to: usize) -> u64 {
        u64::from(((to as i64 - from as i64 - 1) as i32 as u32) << 2)
    }

    fn struct_ptr(&mut self, at: usize, to: usize, data: u16, ptrs: u16) {
        self.0[at] = Self::offset(at, to) | u64::from(data) << 32 | u64::from(ptrs) << 48;
    }

    /// A `Text` (bytes + NUL) pointed to from `at`.
    fn text(&mut self, at: usize, s: &str) {
        let len = s.len() + 1;
        let to = self.alloc(len.div_ceil(8));
        for (i, b) in s.bytes().enumerate() {
            self.0[to + i / 8] |= u64::from(b) << (8 * (i % 8));
        }
        // List pointer: kind 1, element size 2 (byte), element count.
        self.0[at] = 1 | Self::offset(at, to) | 2u64 << 32 | (len as u64) << 35;
    }
}

/// The unpacked message (segment table + segment) for `want`.
fn message(want: &Want<'_>) -> Vec<u8> {
    let mut s = Segment(Vec::new());
    let root = s.alloc(1);
    let desc = s.alloc(2); // data: quality (acceptable = 0); pointer: tags
    s.struct_ptr(root, desc, 1, 1);
    let list = s.alloc(3); // composite list: tag word + one Tag {data: id; pointer: value}
    s.0[list] = 1 << 2 | 1 << 32 | 1 << 48; // one element of 1 data word and 1 pointer
    // List pointer to the tag word: kind 1, element size 7 (composite), 2 words of elements.
    s.0[desc + 1] = 1 | Segment::offset(desc + 1, list) | 7u64 << 32 | 2u64 << 35;
    let (id, value_ptr) = (list + 1, list + 2);
    match want {
        Want::GrainApi(_) | Want::Origin(_) => {
            s.0[id] = WEB_SESSION_ID;
            let v = s.alloc(3); // HttpApi: origin, pathPrefix, apiName
            s.struct_ptr(value_ptr, v, 0, 3);
            match want {
                Want::Origin(o) => s.text(v, o),
                Want::GrainApi(a) => s.text(v + 2, a),
                Want::MailSender => unreachable!(),
            }
        }
        Want::MailSender => {
            s.0[id] = MAIL_SENDER_ID;
            let v = s.alloc(1); // MailAddress: address (null: any)
            s.struct_ptr(value_ptr, v, 0, 1);
        }
    }
    let mut out = Vec::with_capacity(8 + s.0.len() * 8);
    out.extend_from_slice(&0u32.to_le_bytes()); // segment count - 1
    out.extend_from_slice(&(s.0.len() as u32).to_le_bytes());
    for w in &s.0 {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

/// Cap'n Proto packing of `bytes` (a whole number of words).
fn pack(bytes: &[u8]) -> Vec<u8> {
    let words: Vec<&[u8]> = bytes.chunks(8).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let tag = w.iter().enumerate().fold(0u8, |t, (j, b)| if *b != 0 { t | 1 << j } else { t });
        out.push(tag);
        out.extend(w.iter().filter(|b| **b != 0));
        i += 1;
        if tag == 0 {
            // A run of further zero words.
            let run = words[i..].iter().take(255).take_while(|w| w.iter().all(|b| *b == 0)).count();
            out.push(run as u8);
            i += run;
        } else if tag == 0xff {
            // Following words with at most one zero byte are copied as they are (as the
            // reference implementation does; any count is valid).
            let run = words[i..].iter().take(255).take_while(|w| w.iter().filter(|b| **b == 0).count() <= 1).count();
            out.push(run as u8);
            for w in &words[i..i + run] {
                out.extend_from_slice(w);
            }
            i += run;
        }
    }
    out
}

/// RFC 4648 base64url without padding.
pub fn base64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..=c.len() {
            out.push(ABC[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    out
}

/// The descriptor for `want`, as a `powerboxRequest` query element.
pub fn encode(want: &Want<'_>) -> String {
    base64url(&pack(&message(want)))
}

/// Checks an origin typed by a person: `http://` or `https://`, a host of letters, digits,
/// `.` and `-`, an optional port; no path. Returns it lower-cased, without a trailing `/`.
pub fn parse_origin(input: &str) -> Result<String, String> {
    let o = input.trim().trim_end_matches('/').to_ascii_lowercase();
    let bad = || format!("`{}` is not an origin; write it as http://host:port or https://host, without a path", input.trim());
    let rest = o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")).ok_or_else(bad)?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !host.starts_with(['.', '-']);
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)));
    if host_ok && port_ok { Ok(o) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capnp::message::ReaderOptions;
    use granary_schema::powerbox_capnp::{http_api, mail_address, powerbox_descriptor, MatchQuality};

    fn unbase64url(s: &str) -> Vec<u8> {
        let val = |c: u8| "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".bytes().position(|x| x == c).unwrap() as u32;
        let mut out = Vec::new();
        for c in s.as_bytes().chunks(4) {
            let n = c.iter().enumerate().fold(0, |n, (i, b)| n | val(*b) << (18 - 6 * i));
            out.extend(&n.to_be_bytes()[1..c.len()]);
        }
        out
    }

    /// Decodes `encoded` with the capnp library: the tag's id and the reader of its value.
    fn decode(encoded: &str) -> capnp::message::Reader<capnp::serialize::OwnedSegments> {
        let bytes = unbase64url(encoded);
        capnp::serialize_packed::read_message(&mut &bytes[..], ReaderOptions::new()).unwrap()
    }

    #[test]
    fn base64url_matches_rfc_4648() {
        for (plain, want) in [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64url(plain.as_bytes()), want);
            assert_eq!(unbase64url(want), plain.as_bytes());
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn a_grain_api_request_reads_back_as_web_session_and_http_api_name() {
        let msg = decode(&encode(&Want::GrainApi("notes")));
        let d: powerbox_descriptor::Reader<'_> = msg.get_root().unwrap();
        assert_eq!(d.get_quality().unwrap(), MatchQuality::Acceptable);
        let tags = d.get_tags().unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags.get(0).get_id(), WEB_SESSION_ID);
        let v: http_api::Reader<'_> = tags.get(0).get_value().get_as().unwrap();
        assert_eq!(v.get_api_name().unwrap().to_str().unwrap(), "notes");
        assert!(!v.has_origin() && !v.has_path_prefix(), "unset fields are null, which match anything");
    }

    #[test]
    fn an_origin_request_reads_back_as_web_session_and_http_api_origin() {
        for origin in ["http://api.test:8080", "https://x.example", "http://a"] {
            let msg = decode(&encode(&Want::Origin(origin)));
            let d: powerbox_descriptor::Reader<'_> = msg.get_root().unwrap();
            let tag = d.get_tags().unwrap().get(0);
            assert_eq!(tag.get_id(), WEB_SESSION_ID);
            let v: http_api::Reader<'_> = tag.get_value().get_as().unwrap();
            assert_eq!(v.get_origin().unwrap().to_str().unwrap(), origin);
            assert!(!v.has_api_name());
        }
    }

    #[test]
    fn a_mail_request_reads_back_as_mail_sender_and_any_address() {
        let msg = decode(&encode(&Want::MailSender));
        let d: powerbox_descriptor::Reader<'_> = msg.get_root().unwrap();
        let tag = d.get_tags().unwrap().get(0);
        assert_eq!(tag.get_id(), MAIL_SENDER_ID);
        assert!(!tag.get_value().is_null());
        let v: mail_address::Reader<'_> = tag.get_value().get_as().unwrap();
        assert!(!v.has_address());
    }

    #[test]
    fn the_interface_ids_are_the_schemas() {
        use capnp::traits::HasTypeId;
        use granary_schema::{mail_capnp::mail_sender, web_session_capnp::web_session};
        assert_eq!(WEB_SESSION_ID, web_session::Client::TYPE_ID);
        assert_eq!(MAIL_SENDER_ID, mail_sender::Client::TYPE_ID);
    }

    #[test]
    fn packing_matches_the_library() {
        for want in [Want::GrainApi("notes"), Want::Origin("http://api.test:8080"), Want::MailSender] {
            let msg = decode(&encode(&want));
            let mut theirs = Vec::new();
            capnp::serialize_packed::write_message(&mut theirs, &{
                let mut b = capnp::message::Builder::new_default();
                b.set_root(msg.get_root::<powerbox_descriptor::Reader<'_>>().unwrap()).unwrap();
                b
            })
            .unwrap();
            assert_eq!(unbase64url(&encode(&want)), theirs, "{want:?}");
        }
    }

    #[test]
    fn origins_are_checked() {
        assert_eq!(parse_origin(" HTTP://API.test:8080/ ").unwrap(), "http://api.test:8080");
        assert_eq!(parse_origin("https://example.org").unwrap(), "https://example.org");
        for bad in ["", "api.test", "ftp://x", "http://", "http://x/path", "http://x:0", "http://x:65536", "http://x:", "http://a b", "http://u@x", "http://-x"] {
            assert!(parse_origin(bad).unwrap_err().contains("not an origin"), "{bad}");
        }
    }
}
