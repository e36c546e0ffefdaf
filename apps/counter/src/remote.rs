//! The platform as this app uses it: `POST $GRANARY_API/claim` turns the claim token the page
//! got from the powerbox into a saved `gs_…` token (which [`crate::link`] restores over the
//! bridge's local Cap'n Proto endpoint), the calls on a `Counter`, and the encodings.

use granary_app_kit::http;
use granary_app_kit::json::Json;
use granary_schema::sample_capnp::counter;
use std::time::Duration;

/// How long a claim may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Where the platform is, inside a grain.
pub struct Platform {
    /// `host:port` of `$GRANARY_API` (the bridge's local HTTP API).
    pub api: String,
    /// `host:port` of the bridge's local Cap'n Proto endpoint.
    pub capnp: String,
}

impl Platform {
    /// `$GRANARY_API` (default 127.0.0.1:7870) and `$COUNTER_CAPNP_API` (default 127.0.0.1:7871).
    pub fn from_env() -> Platform {
        let api = std::env::var("GRANARY_API").ok().and_then(|u| http::authority_of(&u).ok()).unwrap_or_else(|| "127.0.0.1:7870".into());
        let capnp = std::env::var("COUNTER_CAPNP_API").unwrap_or_else(|_| "127.0.0.1:7871".into());
        Platform { api, capnp }
    }

    /// `POST /claim` for the session `session_id`: the saved `gs_…` token.
    pub fn claim(&self, session_id: &str, claim_token: &str) -> Result<String, String> {
        let body = Json::obj([
            ("sessionId", Json::from(session_id)),
            ("claimToken", Json::from(claim_token)),
            ("label", Json::from("Another counter")),
            ("requiredPermissions", Json::Arr(vec![])),
        ])
        .to_string();
        let r = http::request(&self.api, "POST", "/claim", &[("Content-Type", "application/json")], body.as_bytes(), 1 << 16, TIMEOUT)
            .map_err(|e| format!("cannot reach the platform at {}: {e}", self.api))?;
        let doc = Json::parse(&String::from_utf8_lossy(&r.body)).unwrap_or(Json::Null);
        if r.status != 200 {
            return Err(doc.str_field("error").map(str::to_owned).unwrap_or_else(|| format!("the platform answered HTTP {}", r.status)));
        }
        match doc.str_field("token") {
            Some(t) if t.starts_with("gs_") => Ok(t.to_owned()),
            _ => Err(format!("the platform's /claim answer has no gs_ token: {doc}")),
        }
    }
}

/// The other counter's `add(amount)`: its new total.
pub async fn add(c: counter::Client, amount: i64) -> Result<i64, capnp::Error> {
    let mut req = c.add_request();
    req.get().set_amount(amount);
    Ok(req.send().promise.await?.get()?.get_total())
}

/// The other counter's `get()`: (total, name).
pub async fn get(c: counter::Client) -> Result<(i64, String), capnp::Error> {
    let reply = c.get_request().send().promise.await?;
    let r = reply.get()?;
    Ok((r.get_total(), r.get_name()?.to_string()?))
}

/// The platform's own words: capnp-rpc adds "remote exception: " at every hop.
pub fn platform_message(extra: &str) -> &str {
    let mut m = extra;
    while let Some(rest) = m.strip_prefix("remote exception: ") {
        m = rest;
    }
    m
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding.
pub fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64URL[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The token bytes of `gs_<base64url>`.
pub fn decode_token(token: &str) -> Option<Vec<u8>> {
    base64url_decode(token.strip_prefix("gs_")?).filter(|b| !b.is_empty())
}

/// base64url without padding, decoded; `None` for any other character.
pub fn base64url_decode(body: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in body.bytes() {
        let v = B64URL.iter().position(|x| *x == c)? as u32;
        bits = bits << 6 | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

/// The powerbox query asking for a `Counter`: base64url of the packed `PowerboxDescriptor`
/// with one tag, Counter's type id, and a null value (any counter).
pub fn counter_query() -> String {
    let mut message = capnp::message::Builder::new_default();
    let d = message.init_root::<granary_schema::powerbox_capnp::powerbox_descriptor::Builder>();
    d.init_tags(1).get(0).set_id(crate::tally::COUNTER_ID);
    let mut bytes = Vec::new();
    capnp::serialize_packed::write_message(&mut bytes, &message).expect("writing to a Vec cannot fail");
    base64url(&bytes)
}
