//! `POST /fulfill` and `POST /offer` of the app's local API (SPEC.md, "The app's side"): a
//! provider's chooser page ends the powerbox choice it was opened for, through its session's
//! `SessionContext.fulfillRequest`; an app offers the person using it an API key for the
//! grain's own HTTP API through `SessionContext.offer`.
//!
//! Body: `{"sessionId", "api", "pathPrefix"?, "title"?, "verbPhrase"?, "description"?}` →
//! `fulfillRequest(cap = null, descriptor = WebSession + HttpApi{apiName: api, pathPrefix},
//! displayInfo)` → `{}`; or, for a raw interface the app provides, `"descriptor"` (base64url
//! of a packed `PowerboxDescriptor` carrying the interface's tag and the app's narrowing, at
//! most 8 KiB) instead of `api`/`pathPrefix`. The platform checks everything (that the session
//! is a chooser, that the API or interface is declared, the prefix at or below the declared
//! one, and that the answer matches the request).

use std::rc::Rc;

use capnp::traits::HasTypeId;
use granary_schema::powerbox_capnp::{http_api, powerbox_descriptor};
use granary_schema::web_session_capnp::web_session;
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::local_api::{json_response, read_body, ApiError, ApiResponse, MAX_JSON_BODY};
use crate::Bridge;

const SHAPE: &str = "the body must be JSON {\"sessionId\": \"…\", \"api\": \"<api name>\", \"pathPrefix\": \"/api/…/\", \"title\": \"…\"} \
                     or, for a raw interface, {\"sessionId\": \"…\", \"descriptor\": \"<base64url packed PowerboxDescriptor>\", \"title\": \"…\"}";

/// Largest packed descriptor a chooser may answer with (the platform's query limit).
const MAX_DESCRIPTOR_BYTES: usize = 8 * 1024;

/// A packed `PowerboxDescriptor` from base64url (padding optional), bounded like the
/// platform bounds queries.
fn decode_descriptor(b64: &str) -> Result<capnp::message::Reader<capnp::serialize::OwnedSegments>, ApiError> {
    use base64::Engine;
    let bad = |why: String| ApiError::new(400, format!("{SHAPE}; `descriptor` is not base64url of a packed PowerboxDescriptor: {why}"));
    if b64.len() > MAX_DESCRIPTOR_BYTES.div_ceil(3) * 4 + 2 {
        return Err(ApiError::new(400, format!("`descriptor` is larger than {MAX_DESCRIPTOR_BYTES} bytes")));
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).map_err(|e| bad(e.to_string()))?;
    let options = capnp::message::ReaderOptions { traversal_limit_in_words: Some(8 * 1024), nesting_limit: 16 };
    let message = capnp::serialize_packed::read_message(&bytes[..], options).map_err(|e| bad(e.to_string()))?;
    message.get_root::<powerbox_descriptor::Reader>().map_err(|e| bad(e.to_string()))?;
    Ok(message)
}

/// Longest display text passed on, in characters.
const MAX_TEXT: usize = 200;

/// The string field `k` of `v` (`None` when absent or null; 400 naming `shape` otherwise).
fn text<'v>(v: &'v Value, k: &str, shape: &str) -> Result<Option<&'v str>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::new(400, format!("{shape}; `{k}` must be a string"))),
    }
}

/// The app's words for what it gives: `title`, `verbPhrase`, `description`, each cut to
/// [`MAX_TEXT`] characters.
struct Display {
    title: String,
    verb_phrase: String,
    description: String,
}

impl Display {
    fn read(v: &Value, shape: &str) -> Result<Display, ApiError> {
        let short = |k: &str| -> Result<String, ApiError> { Ok(text(v, k, shape)?.unwrap_or_default().chars().take(MAX_TEXT).collect()) };
        Ok(Display { title: short("title")?, verb_phrase: short("verbPhrase")?, description: short("description")? })
    }

    fn write(&self, mut info: granary_schema::powerbox_capnp::powerbox_display_info::Builder<'_>) {
        info.set_title(self.title.as_str());
        info.set_verb_phrase(self.verb_phrase.as_str());
        info.set_description(self.description.as_str());
    }
}

pub(crate) async fn fulfill(bridge: &Rc<Bridge>, body: Incoming) -> Result<ApiResponse, ApiError> {
    let body = read_body(body, MAX_JSON_BODY).await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::new(400, format!("{SHAPE}: {e}")))?;
    let text = |k: &str| text(&v, k, SHAPE);
    let session_id = text("sessionId")?.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::new(400, format!("{SHAPE}; `sessionId` is missing")))?;
    let raw = text("descriptor")?.map(decode_descriptor).transpose()?;
    let api = match (&raw, text("api")?.filter(|s| !s.is_empty())) {
        (None, None) => return Err(ApiError::new(400, format!("{SHAPE}; `api` is missing"))),
        (Some(_), Some(_)) => return Err(ApiError::new(400, format!("{SHAPE}; give either `api` or `descriptor`, not both"))),
        (_, api) => api.unwrap_or_default(),
    };
    let prefix = text("pathPrefix")?;
    let display = Display::read(&v, SHAPE)?;
    let context = bridge.platform.session(session_id).ok_or_else(|| {
        ApiError::new(
            404,
            format!(
                "no open session `{session_id}`: use the X-Granary-Session-Id header of a request to the chooser page \
                 the powerbox dialog opened, while that dialog is open"
            ),
        )
    })?;
    let mut req = context.fulfill_request_request();
    {
        let mut p = req.get();
        if let Some(message) = &raw {
            p.set_descriptor(message.get_root::<powerbox_descriptor::Reader>()?)?;
        } else {
            let mut tag = p.reborrow().init_descriptor().init_tags(1).get(0);
            tag.set_id(<web_session::Client as HasTypeId>::TYPE_ID);
            let mut value = tag.init_value().init_as::<http_api::Builder>();
            value.set_api_name(api);
            if let Some(prefix) = prefix {
                value.set_path_prefix(prefix);
            }
        }
        display.write(p.init_display_info());
    }
    req.send().promise.await?;
    Ok(json_response(200, &json!({})))
}

const OFFER_SHAPE: &str = "the body must be JSON {\"sessionId\": \"…\", \"title\": \"…\", \"description\": \"…\"}";

/// `POST /offer {"sessionId", "title"?, "verbPhrase"?, "description"?}`: the session's
/// `SessionContext.offer(cap = null, descriptor = WebSession tag (no value), displayInfo)` →
/// `{}`. The person then sees the offer in the shell's dialog; the app learns nothing more.
pub(crate) async fn offer(bridge: &Rc<Bridge>, body: Incoming) -> Result<ApiResponse, ApiError> {
    let body = read_body(body, MAX_JSON_BODY).await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::new(400, format!("{OFFER_SHAPE}: {e}")))?;
    let text = |k: &str| text(&v, k, OFFER_SHAPE);
    let session_id = text("sessionId")?.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::new(400, format!("{OFFER_SHAPE}; `sessionId` is missing")))?;
    let display = Display::read(&v, OFFER_SHAPE)?;
    let context = bridge.platform.session(session_id).ok_or_else(|| {
        ApiError::new(404, format!("no open session `{session_id}`: use the X-Granary-Session-Id header of a request from the person's page, while it is open"))
    })?;
    let mut req = context.offer_request();
    {
        let mut p = req.get();
        p.reborrow().init_descriptor().init_tags(1).get(0).set_id(<web_session::Client as HasTypeId>::TYPE_ID);
        display.write(p.init_display_info());
    }
    req.send().promise.await?;
    Ok(json_response(200, &json!({})))
}
