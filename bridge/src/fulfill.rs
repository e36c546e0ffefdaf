//! `POST /fulfill` and `POST /offer` of the app's local API (SPEC.md, "The app's side"): a
//! provider's chooser page ends the powerbox choice it was opened for, through its session's
//! `SessionContext.fulfillRequest`; an app offers the person using it an API key for the
//! grain's own HTTP API through `SessionContext.offer`.
//!
//! Body: `{"sessionId", "api", "pathPrefix"?, "title"?, "verbPhrase"?, "description"?}` →
//! `fulfillRequest(cap = null, descriptor = WebSession + HttpApi{apiName: api, pathPrefix},
//! displayInfo)` → `{}`. The platform checks everything (that the session is a chooser, that
//! the API is declared, the prefix at or below the declared one and matching the request).

use std::rc::Rc;

use capnp::traits::HasTypeId;
use granary_schema::powerbox_capnp::http_api;
use granary_schema::web_session_capnp::web_session;
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::local_api::{json_response, read_body, ApiError, ApiResponse, MAX_JSON_BODY};
use crate::Bridge;

const SHAPE: &str = "the body must be JSON {\"sessionId\": \"…\", \"api\": \"<api name>\", \"pathPrefix\": \"/api/…/\", \"title\": \"…\"}";

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

pub(crate) async fn fulfill(bridge: &Rc<Bridge>, body: Incoming) -> Result<ApiResponse, ApiError> {
    let body = read_body(body, MAX_JSON_BODY).await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::new(400, format!("{SHAPE}: {e}")))?;
    let text = |k: &str| text(&v, k, SHAPE);
    let session_id = text("sessionId")?.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::new(400, format!("{SHAPE}; `sessionId` is missing")))?;
    let api = text("api")?.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::new(400, format!("{SHAPE}; `api` is missing")))?;
    let prefix = text("pathPrefix")?;
    let short = |s: Option<&str>| s.unwrap_or_default().chars().take(MAX_TEXT).collect::<String>();
    let (title, verb, description) = (short(text("title")?), short(text("verbPhrase")?), short(text("description")?));
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
        let mut tag = p.reborrow().init_descriptor().init_tags(1).get(0);
        tag.set_id(<web_session::Client as HasTypeId>::TYPE_ID);
        let mut value = tag.init_value().init_as::<http_api::Builder>();
        value.set_api_name(api);
        if let Some(prefix) = prefix {
            value.set_path_prefix(prefix);
        }
        let mut info = p.init_display_info();
        info.set_title(title.as_str());
        info.set_verb_phrase(verb.as_str());
        info.set_description(description.as_str());
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
    let short = |s: Option<&str>| s.unwrap_or_default().chars().take(MAX_TEXT).collect::<String>();
    let (title, verb, description) = (short(text("title")?), short(text("verbPhrase")?), short(text("description")?));
    let context = bridge.platform.session(session_id).ok_or_else(|| {
        ApiError::new(404, format!("no open session `{session_id}`: use the X-Granary-Session-Id header of a request from the person's page, while it is open"))
    })?;
    let mut req = context.offer_request();
    {
        let mut p = req.get();
        p.reborrow().init_descriptor().init_tags(1).get(0).set_id(<web_session::Client as HasTypeId>::TYPE_ID);
        let mut info = p.init_display_info();
        info.set_title(title.as_str());
        info.set_verb_phrase(verb.as_str());
        info.set_description(description.as_str());
    }
    req.send().promise.await?;
    Ok(json_response(200, &json!({})))
}
