//! `SessionContext.offer` (SPEC.md, "The shell's side"): an app offers the person using it an
//! API key for the grain's own HTTP API. The offer waits, per UI session, until the grain's
//! page (which long-polls for it) shows it in the shell's dialog; only if the person accepts
//! is a grain API token minted — as them, with at most their permissions — and shown there.
//! The app never sees the key and learns nothing about the answer.
//!
//! May touch: the grain API tokens (mint), the store (read only).
//! Must never: mint a key without the person's click, or for a session without a signed-in,
//! revealed person.

use crate::accounts;
use crate::server::Server;
use granary_powerbox::claims::CLAIM_LIFETIME_SECS;
use granary_powerbox::matching;
use granary_schema::powerbox_capnp::powerbox_descriptor;
use std::collections::HashMap;

/// One offer waiting for the person to see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub id: String,
    pub grain: String,
    /// The gateway session it was made in (its page shows it).
    pub session: String,
    pub user: String,
    pub title: String,
    pub verb_phrase: String,
    pub description: String,
    pub made: u64,
    /// Whether a page has been given it (it is then not given again).
    pub shown: bool,
}

/// Offers by id (in memory; one per session: a newer one replaces it).
#[derive(Debug, Default)]
pub struct OfferBook {
    by_id: HashMap<String, Offer>,
}

impl OfferBook {
    /// Keeps `o`, replacing the session's earlier offer.
    pub fn insert(&mut self, o: Offer) {
        self.by_id.retain(|_, x| x.session != o.session);
        self.by_id.insert(o.id.clone(), o);
    }

    /// The session's offer not yet given to a page, marked given.
    pub fn take_unshown(&mut self, session: &str, now: u64) -> Option<Offer> {
        self.prune(now);
        let o = self.by_id.values_mut().find(|o| o.session == session && !o.shown)?;
        o.shown = true;
        Some(o.clone())
    }

    /// Removes offer `id` if it was made in `session` for `user`.
    pub fn remove(&mut self, id: &str, session: &str, user: &str, now: u64) -> Option<Offer> {
        self.prune(now);
        match self.by_id.get(id) {
            Some(o) if o.session == session && o.user == user => self.by_id.remove(id),
            _ => None,
        }
    }

    /// Forgets offers older than a claim's lifetime (10 minutes).
    pub fn prune(&mut self, now: u64) {
        self.by_id.retain(|_, o| now < o.made + CLAIM_LIFETIME_SECS);
    }
}

/// Why an offer is refused; each says what the app's developer must do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OfferError {
    #[error("offer takes no capability (pass null): the platform offers an API key for this grain's own HTTP API")]
    CapGiven,
    #[error("offer supports only this grain's own HTTP API: a WebSession tag with a null or empty HttpApi (no origin, apiName or pathPrefix)")]
    NotOwnApi,
    #[error("offer needs a UI session of a signed-in person who revealed themselves to the grain; this session has none")]
    NoPerson,
}

/// Whether `d` asks to offer the grain's own HTTP API: a `WebSession` tag whose `HttpApi`
/// names nothing else.
pub fn check_offer(d: powerbox_descriptor::Reader<'_>) -> Result<(), OfferError> {
    let tags = d.get_tags().map_err(|_| OfferError::NotOwnApi)?;
    if tags.len() != 1 {
        return Err(OfferError::NotOwnApi);
    }
    let api = matching::http_api_of(d).ok_or(OfferError::NotOwnApi)?;
    let named = |f: &Option<String>| f.as_deref().is_some_and(|v| !v.is_empty());
    if named(&api.origin) || named(&api.api_name) || named(&api.path_prefix) {
        return Err(OfferError::NotOwnApi);
    }
    Ok(())
}

/// `SessionContext.offer` of gateway session `session` of `grain`.
pub fn offer(server: &Server, grain: &str, session: &str, d: powerbox_descriptor::Reader<'_>, display: (&str, &str, &str)) -> Result<(), OfferError> {
    check_offer(d)?;
    let s = server.gateway.get(session).filter(|s| s.grain_id == grain && s.reveal).ok_or(OfferError::NoPerson)?;
    let user = s.user_id.clone().ok_or(OfferError::NoPerson)?;
    let short = |t: &str| t.trim().chars().take(200).collect::<String>();
    let o = Offer {
        id: accounts::random_hex(16),
        grain: grain.to_owned(),
        session: session.to_owned(),
        user,
        title: short(display.0),
        verb_phrase: short(display.1),
        description: short(display.2),
        made: accounts::now(),
        shown: false,
    };
    tracing::info!(grain, offer = %o.id, "a grain offered an API key");
    server.powerbox.offers.borrow_mut().insert(o);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use granary_powerbox::matching::{http_api_descriptor, mail_descriptor};

    #[test]
    fn only_the_grains_own_http_api_can_be_offered() {
        assert_eq!(check_offer(http_api_descriptor(None, None, None).reader()), Ok(()));
        assert_eq!(check_offer(http_api_descriptor(None, Some(""), None).reader()), Ok(()));
        for d in [
            http_api_descriptor(Some("https://x.example"), None, None),
            http_api_descriptor(None, Some("/api/"), None),
            http_api_descriptor(None, None, Some("notes")),
            mail_descriptor(None),
        ] {
            assert_eq!(check_offer(d.reader()), Err(OfferError::NotOwnApi), "{d:?}");
        }
    }

    fn offer(id: &str, session: &str, made: u64) -> Offer {
        Offer { id: id.into(), grain: "g".into(), session: session.into(), user: "u".into(), title: "t".into(), verb_phrase: String::new(), description: String::new(), made, shown: false }
    }

    #[test]
    fn an_offer_is_given_to_a_page_once_replaced_by_a_newer_one_and_expires() {
        let mut book = OfferBook::default();
        book.insert(offer("a", "s1", 100));
        book.insert(offer("b", "s1", 101));
        book.insert(offer("c", "s2", 100));
        assert_eq!(book.take_unshown("s1", 102).map(|o| o.id), Some("b".into()), "the newer replaced the older");
        assert_eq!(book.take_unshown("s1", 102), None, "given once");
        assert_eq!(book.remove("b", "s2", "u", 102), None, "another session cannot answer it");
        assert_eq!(book.remove("b", "s1", "v", 102), None, "nor another person");
        assert_eq!(book.remove("b", "s1", "u", 102).map(|o| o.id), Some("b".into()));
        assert_eq!(book.take_unshown("s2", 100 + CLAIM_LIFETIME_SECS), None, "expired");
    }
}
