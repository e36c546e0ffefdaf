//! The bridge's half of the header policy (SPEC.md, "Header policy"): which request headers
//! never reach the app, which the bridge sets, and which response headers it drops.

use granary_schema::grain_capnp::session_params;
use granary_schema::web_session_capnp::header;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{BridgeConfig, IdentityField};
use crate::limits::{MAX_HEADER_COUNT, MAX_HEADER_FIELD, MAX_HEADER_TOTAL};

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the legacy ones): they describe one connection,
/// and the connection to the app is the bridge's own. Dropped in both directions, together
/// with every header named in `Connection`.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Request headers the bridge replaces with its own (framing and where the request came from).
/// `expect`: the gateway answers `100-continue` itself; the body always follows on the stream.
const REPLACED: &[&str] = &[
    "content-length",
    "host",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
];

/// Every header whose name starts with this is the platform's: stripped from what clients
/// send, set only by the bridge.
pub const PLATFORM_PREFIX: &str = "x-granary-";

/// Whether the bridge manages `name` itself (hop-by-hop, framing, origin or platform headers),
/// so it cannot be configured as a conventional identity header.
pub fn is_reserved(name: &HeaderName) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(&n) || REPLACED.contains(&n) || n.starts_with(PLATFORM_PREFIX)
}

/// Whether `name` is hop-by-hop by itself (not counting those listed in `Connection`).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Why a request is answered by the bridge instead of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// 400: a name or value that is not valid HTTP.
    Malformed,
    /// 431: too many headers, or too large.
    TooLarge,
}

impl Reject {
    /// The status the caller gets.
    pub fn status(self) -> u16 {
        match self {
            Reject::Malformed => 400,
            Reject::TooLarge => 431,
        }
    }
}

/// The identity headers of one session, computed once at `newSession`.
#[derive(Debug, Clone)]
pub struct SessionHeaders {
    set: Vec<(HeaderName, HeaderValue)>,
    strip: Vec<HeaderName>,
    /// True for API sessions (their paths get the app's API prefix).
    pub api: bool,
}

impl SessionHeaders {
    /// Builds the headers for a session from its parameters; fails if a value the platform
    /// sent cannot be a header value (CR, LF, NUL).
    pub fn new(params: session_params::Reader<'_>, config: &BridgeConfig) -> capnp::Result<Self> {
        let user = params.get_user()?;
        let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> capnp::Result<String> {
            Ok(t?.to_string()?)
        };
        let user_id = text(user.get_id())?;
        let display_name = text(user.get_display_name())?;
        let handle = text(user.get_handle())?;
        let flags = params.get_permissions()?;
        let permissions = config
            .permissions
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < flags.len() as usize && flags.get(*i as u32))
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let base_path = text(params.get_base_path())?;
        let api = matches!(params.get_kind()?, session_params::Kind::Api);

        let mut set = Vec::new();
        let mut push = |name: &str, value: &str| -> capnp::Result<()> {
            let v = HeaderValue::from_str(value)
                .map_err(|_| capnp::Error::failed(format!("session parameter for {name} is not a valid header value")))?;
            set.push((HeaderName::from_bytes(name.as_bytes()).expect("static header name"), v));
            Ok(())
        };
        let anonymous = user_id.is_empty();
        if !anonymous {
            push("x-granary-user-id", &user_id)?;
            push("x-granary-user-handle", &percent_encode(&handle))?;
        }
        push("x-granary-username", &percent_encode(&display_name))?;
        push("x-granary-permissions", &permissions)?;
        push("x-granary-session-id", &text(params.get_session_id())?)?;
        push("x-granary-tab-id", &text(params.get_tab_id())?)?;
        push("x-granary-base-path", &base_path)?;
        push("x-granary-session-type", if api { "api" } else { "ui" })?;
        if let Some((scheme, host)) = base_path.split_once("://") {
            let host = host.split('/').next().unwrap_or_default();
            push("host", host)?;
            push("x-forwarded-host", host)?;
            push("x-forwarded-proto", scheme)?;
        }
        for (name, field) in &config.identity_headers {
            let value = match field {
                IdentityField::UserId if !anonymous => user_id.clone(),
                IdentityField::Handle if !anonymous => percent_encode(&handle),
                IdentityField::DisplayName if !anonymous => percent_encode(&display_name),
                IdentityField::Permissions => permissions.clone(),
                _ => continue,
            };
            push(name.as_str(), &value)?;
        }
        let strip = config.identity_headers.iter().map(|(n, _)| n.clone()).collect();
        Ok(Self { set, strip, api })
    }

    /// The app's request headers: the caller's list minus everything the policy strips, plus
    /// this session's identity headers. Checks the header limits first.
    pub fn request_headers(&self, list: capnp::struct_list::Reader<'_, header::Owned>) -> Result<HeaderMap, Reject> {
        let fields = read_fields(list)?;
        let hop = connection_tokens(fields.iter().map(|(n, v)| (n, v)));
        let mut map = HeaderMap::with_capacity(fields.len() + self.set.len());
        for (name, value) in fields {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n)
                || REPLACED.contains(&n)
                || n.starts_with(PLATFORM_PREFIX)
                || hop.contains(&name)
                || self.strip.contains(&name)
            {
                continue;
            }
            map.append(name, value);
        }
        for (name, value) in &self.set {
            map.append(name.clone(), value.clone());
        }
        Ok(map)
    }
}

fn read_fields(list: capnp::struct_list::Reader<'_, header::Owned>) -> Result<Vec<(HeaderName, HeaderValue)>, Reject> {
    if list.len() as usize > MAX_HEADER_COUNT {
        return Err(Reject::TooLarge);
    }
    let mut total = 0usize;
    let mut fields = Vec::with_capacity(list.len() as usize);
    for h in list.iter() {
        let name = h.get_name().map_err(|_| Reject::Malformed)?.as_bytes();
        let value = h.get_value().map_err(|_| Reject::Malformed)?;
        let size = name.len() + value.len();
        if size > MAX_HEADER_FIELD {
            return Err(Reject::TooLarge);
        }
        total += size;
        if total > MAX_HEADER_TOTAL {
            return Err(Reject::TooLarge);
        }
        let name = HeaderName::from_bytes(name).map_err(|_| Reject::Malformed)?;
        let value = HeaderValue::from_bytes(value).map_err(|_| Reject::Malformed)?;
        fields.push((name, value));
    }
    Ok(fields)
}

/// Header names listed in `Connection` fields (they are hop-by-hop too).
pub fn connection_tokens<'a>(fields: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>) -> Vec<HeaderName> {
    fields
        .into_iter()
        .filter(|(n, _)| *n == hyper::header::CONNECTION)
        .filter_map(|(_, v)| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// The app's response headers as the caller gets them: hop-by-hop headers dropped, and
/// Content-Length dropped unless the body is `none`. `Err` if they break the header limits
/// (the caller then gets 502).
pub fn response_headers(map: &HeaderMap, body_is_none: bool) -> Result<Vec<(&HeaderName, &HeaderValue)>, Reject> {
    let hop = connection_tokens(map.iter());
    let mut out = Vec::with_capacity(map.len());
    let mut total = 0usize;
    for (name, value) in map {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || hop.contains(name) || (n == "content-length" && !body_is_none) {
            continue;
        }
        let size = n.len() + value.len();
        total += size;
        if size > MAX_HEADER_FIELD || total > MAX_HEADER_TOTAL {
            return Err(Reject::TooLarge);
        }
        out.push((name, value));
    }
    if out.len() > MAX_HEADER_COUNT {
        return Err(Reject::TooLarge);
    }
    Ok(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so any display name is a
/// valid ASCII header value (`Zoë Ø` → `Zo%C3%AB%20%C3%98`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("Zoë Ø"), "Zo%C3%AB%20%C3%98");
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("a,b\r\n"), "a%2Cb%0D%0A");
    }

    #[test]
    fn response_policy_drops_hop_by_hop_and_connection_listed() {
        let mut m = HeaderMap::new();
        m.insert("connection", HeaderValue::from_static("close, x-private"));
        m.insert("x-private", HeaderValue::from_static("1"));
        m.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        m.insert("content-length", HeaderValue::from_static("10"));
        m.append("set-cookie", HeaderValue::from_static("a=1"));
        m.append("set-cookie", HeaderValue::from_static("b=2"));
        let names = |none| {
            response_headers(&m, none).unwrap().iter().map(|(n, v)| format!("{n}: {}", v.to_str().unwrap())).collect::<Vec<_>>()
        };
        assert_eq!(names(false), ["set-cookie: a=1", "set-cookie: b=2"]);
        assert_eq!(names(true), ["content-length: 10", "set-cookie: a=1", "set-cookie: b=2"]);
        m.insert("x-big", HeaderValue::from_bytes(&vec![b'a'; MAX_HEADER_FIELD]).unwrap());
        assert_eq!(response_headers(&m, false), Err(Reject::TooLarge));
    }
}
