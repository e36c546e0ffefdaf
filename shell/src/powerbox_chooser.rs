//! Provider chooser pages (SPEC.md, "The shell's side"): picking a grain whose app declares a
//! `chooser_path` opens a UI session of that grain for the same person, shown inside the
//! powerbox dialog; the app's page ends the choice with `SessionContext.fulfillRequest`, which
//! issues the claim for what it chose (at or below the declared path prefix), and the dialog,
//! polling, hands that claim to the requesting app exactly as a plain pick does.
//!
//! May touch: the gateway (to open and close the chooser's session), the claim book, the
//! store (read only).
//! Must never: let a session that was not opened as a chooser fulfil a request, grant more
//! than the entry the person picked (another API, a path above its prefix, more permissions),
//! or grant something the original request did not ask for.

use crate::accounts::{self, User};
use crate::gateway::Access;
use crate::grains::{self, Grain};
use crate::powerbox_host::{Pending, PbOption, ShellWorld};
use crate::server::Server;
use crate::apps;
use granary_grains::manifest::{valid_path_prefix, ApiProvide};
use granary_powerbox::claims::CLAIM_LIFETIME_SECS;
use granary_powerbox::matching::{self, OwnedDescriptor};
use granary_powerbox::{Requirement, Target};
use granary_schema::powerbox_capnp::powerbox_descriptor;
use std::collections::HashMap;

/// Chooser pages open at once at most (the oldest are forgotten first).
pub const MAX_CHOOSERS: usize = 1000;

/// What the provider's page chose: the claim for the requesting session and the descriptor
/// the requesting app is told it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fulfilled {
    pub token: String,
    pub descriptor: String,
}

/// One open chooser: a session of the provider grain bound to a pending powerbox request.
#[derive(Debug)]
pub struct Chooser {
    /// What the dialog polls with (random).
    pub id: String,
    pub requester_grain: String,
    /// The gateway session of the requesting grain: the claim is issued to it.
    pub requester_session: String,
    /// The person choosing.
    pub user: String,
    pub provider_grain: String,
    pub provider_title: String,
    /// The provider's gateway session shown in the dialog (its label).
    pub chooser_session: String,
    /// The manifest entry the person picked.
    pub entry: ApiProvide,
    /// The request descriptor the picked option answers.
    pub query: OwnedDescriptor,
    pub opened: u64,
    pub result: Option<Fulfilled>,
}

/// The open choosers, by id (in memory: they end with the server, like claims).
#[derive(Debug, Default)]
pub struct ChooserBook {
    by_id: HashMap<String, Chooser>,
}

impl ChooserBook {
    /// Keeps `c`, forgetting the oldest beyond [`MAX_CHOOSERS`]; returns those forgotten.
    pub fn insert(&mut self, c: Chooser) -> Vec<Chooser> {
        let mut gone = Vec::new();
        while self.by_id.len() >= MAX_CHOOSERS {
            let Some(oldest) = self.by_id.values().min_by_key(|c| c.opened).map(|c| c.id.clone()) else { break };
            gone.extend(self.by_id.remove(&oldest));
        }
        self.by_id.insert(c.id.clone(), c);
        gone
    }

    pub fn get(&self, id: &str) -> Option<&Chooser> {
        self.by_id.get(id)
    }

    /// The chooser shown in the gateway session `label`, if that session is one.
    pub fn by_session(&mut self, label: &str) -> Option<&mut Chooser> {
        self.by_id.values_mut().find(|c| c.chooser_session == label)
    }

    pub fn remove(&mut self, id: &str) -> Option<Chooser> {
        self.by_id.remove(id)
    }

    /// Forgets the choosers older than a claim's lifetime; returns them.
    pub fn prune(&mut self, now: u64) -> Vec<Chooser> {
        let old: Vec<String> = self.by_id.values().filter(|c| now >= c.opened + CLAIM_LIFETIME_SECS).map(|c| c.id.clone()).collect();
        old.iter().filter_map(|id| self.by_id.remove(id)).collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Why a provider's `fulfillRequest` is refused; each says what the app's developer must do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FulfilError {
    #[error("this session was not opened as a powerbox chooser (or the dialog was closed or timed out): only the page the powerbox dialog shows (the app's chooser_path) can fulfil a request")]
    NotChooser,
    #[error("this powerbox request was answered already; the dialog takes the first answer")]
    Answered,
    #[error("fulfillRequest takes no capability (pass null): the platform makes it from the descriptor, so it can be saved and restored")]
    CapGiven,
    #[error("the descriptor must have a tag whose id is the interface the person picked this grain for ({0:#018x}); its value may narrow what is granted")]
    OtherInterface(u64),
    #[error("the descriptor is larger than {max} bytes packed: narrow it with less data", max = matching::MAX_QUERY_BYTES)]
    DescriptorTooLarge,
    #[error("the descriptor must be a WebSession tag whose value is HttpApi{{apiName, pathPrefix}} naming one of the app's [[powerbox.provides]] APIs")]
    NotHttpApi,
    #[error("the descriptor names an origin; a grain provides its own APIs: leave HttpApi.origin null")]
    WithOrigin,
    #[error("the descriptor names the API `{asked}`, but the person picked this grain for `{picked}`: fulfil with apiName = \"{picked}\"")]
    OtherApi { asked: String, picked: String },
    #[error("the path prefix `{0}` is not valid: it starts and ends with /, has no spaces, ?, #, \\, %, .. or //, and is at most 200 characters")]
    BadPrefix(String),
    #[error("the path prefix `{prefix}` is not at or below `{declared}`, the one the manifest declares for this API")]
    OutsidePrefix { prefix: String, declared: String },
    #[error("what was chosen (API `{api}` below `{prefix}`) does not match what the requesting grain asked for; offer something that does, or let the person cancel")]
    NoMatch { api: String, prefix: String },
    #[error("the person choosing no longer holds the permissions this API needs on the grain; they must ask its owner for access and choose again")]
    LostAccess,
}

/// The descriptor granted when the provider fulfils `request` (the descriptor the option
/// answers) for the manifest `entry` with `offered`, and for an HTTP API the path prefix: for
/// an API, `WebSession` + `HttpApi{apiName, pathPrefix}` with `pathPrefix` at or below the
/// declared one (null = the declared one); for a raw interface, `offered` itself, which must
/// carry the interface's tag (its value, and any other tags, are the app's own narrowing,
/// passed to `MainView.provide` whenever the grant is made live) and match the request.
pub fn check_fulfilment(entry: &ApiProvide, request: powerbox_descriptor::Reader<'_>, offered: powerbox_descriptor::Reader<'_>) -> Result<(Option<String>, OwnedDescriptor), FulfilError> {
    if entry.interface_id != 0 {
        let tags = offered.get_tags().map_err(|_| FulfilError::OtherInterface(entry.interface_id))?;
        if !tags.iter().any(|t| t.get_id() == entry.interface_id) {
            return Err(FulfilError::OtherInterface(entry.interface_id));
        }
        let granted = OwnedDescriptor::copy_of(offered).map_err(|_| FulfilError::DescriptorTooLarge)?;
        if matching::packed_descriptor(&granted).len() > matching::MAX_QUERY_BYTES {
            return Err(FulfilError::DescriptorTooLarge);
        }
        if matching::offer_matches(request, granted.reader()).is_none() {
            return Err(FulfilError::NoMatch { api: entry.name(), prefix: String::new() });
        }
        return Ok((None, granted));
    }
    let api = matching::http_api_of(offered).ok_or(FulfilError::NotHttpApi)?;
    if api.origin.as_deref().is_some_and(|o| !o.is_empty()) {
        return Err(FulfilError::WithOrigin);
    }
    let name = api.api_name.unwrap_or_default();
    if name != entry.api {
        return Err(FulfilError::OtherApi { asked: name, picked: entry.api.clone() });
    }
    let prefix = api.path_prefix.filter(|p| !p.is_empty()).unwrap_or_else(|| entry.path_prefix.clone());
    if !valid_path_prefix(&prefix) {
        return Err(FulfilError::BadPrefix(prefix));
    }
    if !prefix.starts_with(&entry.path_prefix) {
        return Err(FulfilError::OutsidePrefix { prefix, declared: entry.path_prefix.clone() });
    }
    let granted = matching::http_api_descriptor(None, Some(&prefix), Some(&entry.api));
    if matching::offer_matches(request, granted.reader()).is_none() {
        return Err(FulfilError::NoMatch { api: entry.api.clone(), prefix });
    }
    Ok((Some(prefix), granted))
}

/// The grain and manifest entry whose chooser page `option` opens, if it opens one.
pub fn chooser_of(server: &Server, option: &PbOption) -> Option<(Grain, apps::InstalledApp, ApiProvide)> {
    let (grain, api, interface) = match &option.pending.target {
        Target::GrainApi { grain, api, .. } => (grain, api.as_str(), 0),
        Target::GrainObject { grain, interface_id, .. } => (grain, "", *interface_id),
        _ => return None,
    };
    let g = server.db.get(&grains::GRAINS, grain).ok()??;
    let app = apps::get(&server.db, &g.package_id).ok()??;
    let entry = app.manifest.provides.iter().find(|p| p.interface_id == interface && p.api == api && !p.chooser_path.is_empty())?.clone();
    Some((g, app, entry))
}

/// The path the chooser's frame opens: `chooser_path` with `powerboxRequest=<the request
/// descriptor, base64url>` added to its query, unless that makes it longer than a session may
/// open at (2 KiB); then the bare `chooser_path`.
pub fn chooser_page(chooser_path: &str, query: &OwnedDescriptor) -> String {
    let sep = if chooser_path.contains('?') { '&' } else { '?' };
    let with = format!("{chooser_path}{sep}powerboxRequest={}", matching::encode_descriptor(query));
    if crate::gateway::Gateway::in_grain_path(&with).is_some() { with } else { chooser_path.to_owned() }
}

/// Opens the chooser of `option` (which must be one, see [`chooser_of`]) for `user` answering
/// `query` of the requesting session; returns (chooser id, init URL of the provider's session
/// at its chooser page), or why it cannot be opened.
pub fn open(server: &Server, user: &User, requester: &Grain, requester_session: &str, option: &PbOption, query: &OwnedDescriptor) -> anyhow::Result<Result<(String, String), String>> {
    let Some((g, app, entry)) = chooser_of(server, option) else {
        return Ok(Err("That choice does not open a chooser page; pick it without one.".into()));
    };
    let Some(permissions) = server.current_permissions(&g, &app.manifest, Some(&user.id), None, true)? else {
        return Ok(Err(format!("You no longer have access to “{}”.", g.title)));
    };
    let init = server.gateway.open(&g, Access { user: Some(user), reveal: true, link_id: None, permissions });
    let label = init.split("://").nth(1).and_then(|h| h.split('.').next()).unwrap_or_default().to_owned();
    let page = chooser_page(&entry.chooser_path, query);
    let url = format!("{init}?path={}", form_urlencoded::byte_serialize(page.as_bytes()).collect::<String>());
    let id = accounts::random_hex(16);
    let now = accounts::now();
    let chooser = Chooser {
        id: id.clone(),
        requester_grain: requester.id.clone(),
        requester_session: requester_session.to_owned(),
        user: user.id.clone(),
        provider_grain: g.id.clone(),
        provider_title: g.title.clone(),
        chooser_session: label,
        entry,
        query: query.clone(),
        opened: now,
        result: None,
    };
    let mut gone = server.powerbox.choosers.borrow_mut().prune(now);
    gone.extend(server.powerbox.choosers.borrow_mut().insert(chooser));
    close_sessions(server, &gone);
    tracing::info!(chooser = %id, provider = %g.id, requester = %requester.id, "powerbox chooser opened");
    Ok(Ok((id, url)))
}

/// Ends the provider sessions of choosers that are gone.
fn close_sessions(server: &Server, gone: &[Chooser]) {
    for c in gone {
        server.gateway.close_where(|s| s.label == c.chooser_session);
    }
}

/// Forgets expired choosers and ends their sessions (the recheck timer calls this).
pub fn prune(server: &Server) {
    let gone = server.powerbox.choosers.borrow_mut().prune(accounts::now());
    close_sessions(server, &gone);
}

/// `SessionContext.fulfillRequest` of the gateway session `session`: checks what the page
/// chose against the picked entry and the request, and issues the claim for the narrowed
/// target to the requesting session. `display` = the app's (title, verb phrase), shown after
/// the platform's own words.
pub fn fulfil(server: &Server, session: &str, offered: powerbox_descriptor::Reader<'_>, display: (&str, &str)) -> Result<(), FulfilError> {
    prune(server);
    let mut book = server.powerbox.choosers.borrow_mut();
    let c = book.by_session(session).filter(|_| !session.is_empty()).ok_or(FulfilError::NotChooser)?;
    if c.result.is_some() {
        return Err(FulfilError::Answered);
    }
    let (prefix, granted) = check_fulfilment(&c.entry, c.query.reader(), offered)?;
    let shown: String = [display.0, display.1].iter().map(|s| s.trim()).find(|s| !s.is_empty()).unwrap_or_default().chars().take(100).collect();
    let mut text = match &prefix {
        Some(prefix) => format!("may use {} in “{}” below {prefix}", c.entry.title, c.provider_title),
        None => format!("may use {} in “{}”", c.entry.title, c.provider_title),
    };
    if !shown.is_empty() {
        text.push_str(&format!(" (“{shown}”)"));
    }
    let pending = Pending {
        target: match prefix {
            Some(path_prefix) => Target::GrainApi { grain: c.provider_grain.clone(), api: c.entry.api.clone(), path_prefix, permissions: c.entry.permissions.clone() },
            None => Target::GrainObject {
                grain: c.provider_grain.clone(),
                interface_id: c.entry.interface_id,
                descriptor: matching::packed_descriptor(&granted),
                permissions: c.entry.permissions.clone(),
            },
        },
        display: text,
        requirements: vec![Requirement::UserHasPermissions { user: c.user.clone(), grain: c.provider_grain.clone(), permissions: c.entry.permissions.clone() }],
        granted_by: c.user.clone(),
    };
    if granary_powerbox::check(&pending.requirements, &ShellWorld { db: &server.db }).is_err() {
        return Err(FulfilError::LostAccess);
    }
    if server.gateway.get(&c.chooser_session).is_none() {
        // Its session ended (the person's access changed): the dialog no longer shows it.
        return Err(FulfilError::NotChooser);
    }
    let token = server.powerbox.claims.borrow_mut().issue(&c.requester_session, &c.user, pending, accounts::now());
    c.result = Some(Fulfilled { token: token.as_str().to_owned(), descriptor: matching::encode_descriptor(&granted) });
    tracing::info!(chooser = %c.id, provider = %c.provider_grain, requester = %c.requester_grain, "powerbox chooser fulfilled");
    Ok(())
}

/// What the dialog's poll learns.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    Pending,
    Done(Fulfilled),
    /// Unknown, expired, or not this person's and session's.
    Gone,
}

/// The dialog asks whether chooser `id` (opened for `user` in `requester_session`) was
/// fulfilled; once it was, the chooser and its session end.
pub fn poll(server: &Server, user: &str, requester_session: &str, id: &str) -> Poll {
    prune(server);
    let mut book = server.powerbox.choosers.borrow_mut();
    match book.get(id) {
        Some(c) if c.user == user && c.requester_session == requester_session => {
            if c.result.is_none() {
                if server.gateway.get(&c.chooser_session).is_some() {
                    return Poll::Pending;
                }
                // Its session ended (the person's access to the provider changed): so does it.
                book.remove(id);
                return Poll::Gone;
            }
        }
        _ => return Poll::Gone,
    }
    let c = book.remove(id).expect("present above");
    drop(book);
    close_sessions(server, std::slice::from_ref(&c));
    Poll::Done(c.result.clone().expect("checked above"))
}

/// The person closed the dialog: the chooser and its session end. False if there was none.
pub fn cancel(server: &Server, user: &str, requester_session: &str, id: &str) -> bool {
    let mut book = server.powerbox.choosers.borrow_mut();
    if !book.get(id).is_some_and(|c| c.user == user && c.requester_session == requester_session) {
        return false;
    }
    let c = book.remove(id).expect("present above");
    drop(book);
    close_sessions(server, &[c]);
    true
}

#[cfg(test)]
#[path = "powerbox_chooser_tests.rs"]
mod tests;
