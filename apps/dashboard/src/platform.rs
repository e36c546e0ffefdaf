//! The bridge's local API inside the grain (SPEC.md, "The app's side"): `$GRANARY_API` for
//! `/claim`, `/tokens/<token>`, `/offer` and `/mail/send`, and `$HTTP_PROXY` for requests through a
//! saved capability (absolute-form requests with `Authorization: Bearer gs_…`).

use granary_app_kit::http::{self, authority_of, percent_encode, ClientResponse};
use granary_app_kit::json::Json;
use std::time::Duration;

/// Most of an answer read from the platform or through a capability.
const MAX_ANSWER: usize = 4 << 20;
/// How long a claim may take (the platform checks requirements) and how long a call may.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Platform {
    /// `host:port` of `$GRANARY_API`, or why it is unusable.
    api: Result<String, String>,
    /// `host:port` of `$HTTP_PROXY`, or why it is unusable.
    proxy: Result<String, String>,
}

fn from_var(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) => authority_of(&v).map_err(|e| format!("{name} is {e}; Granary sets it to http://127.0.0.1:PORT inside a grain")),
        Err(_) => Err(format!("{name} is not set: this dashboard must run inside a Granary grain, where the platform sets it")),
    }
}

/// The text of a failed answer: its `{"error"}` verbatim, else its body, else its status.
pub fn error_text(r: &ClientResponse) -> String {
    let body = String::from_utf8_lossy(&r.body);
    if let Some(e) = Json::parse(&body).ok().as_ref().and_then(|j| j.str_field("error")) {
        return e.to_owned();
    }
    let body = body.trim();
    if body.is_empty() { format!("HTTP {} {}", r.status, http::reason(r.status)) } else { body.chars().take(2048).collect() }
}

impl Platform {
    pub fn from_env() -> Platform {
        Platform { api: from_var("GRANARY_API"), proxy: from_var("HTTP_PROXY").or_else(|e| from_var("http_proxy").map_err(|_| e)) }
    }

    /// A platform at fixed addresses (tests).
    #[cfg(test)]
    pub fn at(api: &str, proxy: &str) -> Platform {
        Platform { api: Ok(api.into()), proxy: Ok(proxy.into()) }
    }

    fn api(&self) -> Result<&str, String> {
        self.api.as_deref().map_err(Clone::clone)
    }

    /// `POST /claim`: turns the claim token the shell gave the page into a saved `gs_…` token.
    pub fn claim(&self, session_id: &str, claim_token: &str, label: &str) -> Result<String, String> {
        let body = Json::obj([
            ("sessionId", Json::from(session_id)),
            ("claimToken", Json::from(claim_token)),
            ("label", Json::from(label)),
            ("requiredPermissions", Json::Arr(vec![])),
        ])
        .to_string();
        let r = http::request(self.api()?, "POST", "/claim", &[("Content-Type", "application/json")], body.as_bytes(), MAX_ANSWER, CLAIM_TIMEOUT)
            .map_err(|e| format!("cannot reach the platform at $GRANARY_API: {e}"))?;
        if r.status != 200 {
            return Err(error_text(&r));
        }
        let doc = Json::parse(&String::from_utf8_lossy(&r.body)).map_err(|e| format!("the platform's /claim answer is not JSON: {e}"))?;
        match doc.str_field("token") {
            Some(t) if t.starts_with("gs_") => Ok(t.to_owned()),
            _ => Err(format!("the platform's /claim answer has no gs_ token: {doc}")),
        }
    }

    /// `POST /offer`: asks the platform to offer the person using session `session_id` an API
    /// key for this grain; the shell shows the offer, and the key is never seen here.
    pub fn offer(&self, session_id: &str, title: &str, description: &str) -> Result<(), String> {
        let body = Json::obj([("sessionId", Json::from(session_id)), ("title", Json::from(title)), ("description", Json::from(description))]).to_string();
        let r = http::request(self.api()?, "POST", "/offer", &[("Content-Type", "application/json")], body.as_bytes(), MAX_ANSWER, CALL_TIMEOUT)
            .map_err(|e| format!("cannot reach the platform at $GRANARY_API: {e}"))?;
        if r.status == 200 { Ok(()) } else { Err(error_text(&r)) }
    }

    /// `DELETE /tokens/<token>`: drops the saved capability.
    pub fn drop_token(&self, token: &str) -> Result<(), String> {
        let r = http::request(self.api()?, "DELETE", &format!("/tokens/{}", percent_encode(token)), &[], b"", MAX_ANSWER, CALL_TIMEOUT)
            .map_err(|e| format!("cannot reach the platform at $GRANARY_API: {e}"))?;
        if (200..300).contains(&r.status) { Ok(()) } else { Err(error_text(&r)) }
    }

    /// `GET <url>` through the capability `token` (an absolute URL to `$HTTP_PROXY`).
    pub fn get_through(&self, token: &str, url: &str) -> Result<ClientResponse, String> {
        let proxy = self.proxy.as_deref().map_err(Clone::clone)?;
        let auth = format!("Bearer {token}");
        http::request(proxy, "GET", url, &[("Authorization", &auth), ("Accept", "application/json, text/*")], b"", MAX_ANSWER, CALL_TIMEOUT)
            .map_err(|e| format!("cannot reach the platform's proxy at $HTTP_PROXY: {e}"))
    }

    /// `POST /mail/send?to=…` with the message (RFC 5322) through the capability `token`.
    pub fn send_mail(&self, token: &str, to: &str, message: &[u8]) -> Result<ClientResponse, String> {
        let auth = format!("Bearer {token}");
        let target = format!("/mail/send?to={}", percent_encode(to));
        http::request(self.api()?, "POST", &target, &[("Authorization", &auth), ("Content-Type", "message/rfc822")], message, MAX_ANSWER, CALL_TIMEOUT)
            .map_err(|e| format!("cannot reach the platform at $GRANARY_API: {e}"))
    }
}

#[cfg(test)]
pub fn tests_from_var(name: &str) -> Result<String, String> {
    from_var(name)
}
