//! The server's side of the powerbox (SPEC.md, "Powerbox"): the [`World`] requirements are
//! checked against, the options a request can be answered with, claims, and turning a
//! [`Target`] into the live capability a grain receives — always inside a membrane.
//!
//! May touch: the store's grant tables (through `granary_powerbox::GrantStore`), the sharing
//! model (read only), the runner (to reach a provider grain), and the drivers.
//! Must never: hand a grain a capability that is not wrapped in a membrane, or answer a claim
//! for another session.

use crate::accounts::{self, User};
use crate::grains::{self, Grain};
use crate::server::Server;
use crate::{apps, sharing, tokens};
use granary_powerbox::matching::{self, OwnedDescriptor};
use granary_powerbox::{ClaimBook, GrantStore, LiveGrant, MembraneRegistry, Requirement, Target, World};
use granary_store::Db;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// A claim waiting to be redeemed by the requesting grain's session.
#[derive(Clone, Debug)]
pub struct Pending {
    pub target: Target,
    pub display: String,
    pub requirements: Vec<Requirement>,
    /// The person who picked it.
    pub granted_by: String,
}

/// Everything the server keeps for the powerbox.
pub struct PowerboxHost {
    db: Rc<Db>,
    pub claims: RefCell<ClaimBook<Pending>>,
    /// Provider chooser pages open in powerbox dialogs.
    pub choosers: RefCell<crate::powerbox_chooser::ChooserBook>,
    /// API keys apps offered, waiting for their grain page to show them.
    pub offers: RefCell<crate::powerbox_offer::OfferBook>,
    pub membranes: MembraneRegistry,
    /// The HTTP driver's resolver overrides and allowlist (the allowlist follows the settings).
    pub net: Rc<RefCell<granary_powerbox::drivers::ssrf::NetPolicy>>,
    /// One rate per send-mail grant... kept per address.
    pub mail_rates: RefCell<std::collections::HashMap<String, Rc<granary_powerbox::drivers::mail_send::SendRate>>>,
    next_claim: Cell<u64>,
}

impl PowerboxHost {
    pub fn new(db: Rc<Db>, net: granary_powerbox::drivers::ssrf::NetPolicy) -> PowerboxHost {
        PowerboxHost {
            db,
            claims: RefCell::new(ClaimBook::new()),
            choosers: Default::default(),
            offers: Default::default(),
            membranes: MembraneRegistry::new(),
            net: Rc::new(RefCell::new(net)),
            mail_rates: Default::default(),
            next_claim: Cell::new(1),
        }
    }

    /// The saved capabilities.
    pub fn grants(&self) -> GrantStore<'_> {
        GrantStore::new(&self.db)
    }

    /// A fresh key for the membrane of a claimed (not yet saved) capability.
    pub fn next_claim_key(&self) -> u64 {
        let n = self.next_claim.get();
        self.next_claim.set(n + 1);
        n
    }

    /// Makes the HTTP driver's allowlist the stored setting's.
    pub fn sync_allowlist(&self, hosts: &[String]) {
        self.net.borrow_mut().allow_private_hosts = hosts.iter().cloned().collect();
    }
}

/// A grain was deleted: everything it held ends, and its grants are revoked (they stay listed
/// for the record).
pub fn forget_grain(server: &Server, grain_id: &str) -> anyhow::Result<()> {
    server.powerbox.membranes.revoke_owned_by(grain_id);
    let grants = server.powerbox.grants();
    for g in grants.list_for_grain(grain_id)? {
        grants.revoke(&g.id)?;
    }
    server.recheck_capabilities();
    Ok(())
}

/// Every 500 ms: end live capabilities whose requirements no longer hold or that expired,
/// and record which grants were used.
pub fn start_recheck(server: &Rc<Server>) {
    let weak = Rc::downgrade(server);
    server
        .ex
        .spawn(async move {
            loop {
                async_io::Timer::after(Duration::from_millis(500)).await;
                let Some(server) = weak.upgrade() else { break };
                let pb = &server.powerbox;
                let ended = pb.membranes.recheck(&ShellWorld { db: &server.db }) + pb.membranes.revoke_expired(accounts::now());
                if ended > 0 {
                    tracing::info!(ended, "live capabilities ended: a requirement no longer holds or they expired");
                }
                let now = accounts::now();
                for id in pb.membranes.take_used() {
                    let _ = pb.grants().touch_last_used(&id, now);
                }
                pb.claims.borrow_mut().prune(now);
                crate::powerbox_chooser::prune(&server);
                pb.offers.borrow_mut().prune(now);
            }
        })
        .detach();
}

/// The requirements' view of the server's accounts, grains, sharing and tokens.
pub struct ShellWorld<'a> {
    pub db: &'a Db,
}

impl World for ShellWorld<'_> {
    fn user_permissions(&self, user: &str, grain: &str) -> Option<Vec<bool>> {
        let u = self.db.get(&accounts::USERS, user).ok()??;
        if u.suspended {
            return None;
        }
        let g = self.db.get(&grains::GRAINS, grain).ok()??;
        if g.trashed.is_some() {
            return None;
        }
        let app = apps::get(self.db, &g.package_id).ok()??;
        if g.owner == user {
            return Some(vec![true; app.manifest.permissions.len()]);
        }
        sharing::user_permissions(self.db, &g, &app.manifest, user).ok()?
    }

    fn user_is_admin(&self, user: &str) -> bool {
        matches!(self.db.get(&accounts::USERS, user), Ok(Some(u)) if u.admin && !u.suspended)
    }

    fn verified_address(&self, user: &str) -> Option<String> {
        self.db.get(&accounts::USERS, user).ok()?.filter(|u| !u.suspended)?.email
    }

    fn token_valid(&self, token: &str) -> bool {
        let Ok(iter) = self.db.iter(&tokens::TOKENS) else { return false };
        iter.filter_map(Result::ok).any(|(_, t)| t.id == token && matches!(self.db.get(&accounts::USERS, &t.user_id), Ok(Some(u)) if !u.suspended))
    }
}

/// One way to answer a request, as the picker shows it.
#[derive(Clone, Debug)]
pub struct PbOption {
    pub id: String,
    pub title: String,
    pub verb_phrase: String,
    pub description: String,
    /// Which request descriptor it answers.
    pub answers: usize,
    pub pending: Pending,
}

/// `holds ⊇ needs`, flag by flag.
pub fn holds_all(holds: &[bool], needs: &[bool]) -> bool {
    needs.iter().enumerate().all(|(i, n)| !*n || holds.get(i).copied().unwrap_or(false))
}

/// The permissions held in both `a` and `b`, indexed like `a`.
pub fn intersect(a: &[bool], b: &[bool]) -> Vec<bool> {
    a.iter().enumerate().map(|(i, p)| *p && b.get(i).copied().unwrap_or(false)).collect()
}

/// The domain of grain mail addresses: the `mail_domain` setting, else the base URL's host.
pub fn mail_domain(server: &Server) -> String {
    let s = crate::settings::load(&server.db).unwrap_or_default();
    if s.mail_domain.is_empty() {
        server.base.host.split(':').next().unwrap_or("localhost").to_owned()
    } else {
        s.mail_domain
    }
}

/// The grain's own mail address.
pub fn grain_address(server: &Server, grain_id: &str) -> String {
    format!("{grain_id}@{}", mail_domain(server))
}

/// What a request asks for, in words.
/// What `query` asks for, in words for the person choosing. `interface` names a raw
/// interface by type id when an installed app provides it: (what it is called, the app).
pub fn describe_request(query: &[OwnedDescriptor], interface: &dyn Fn(u64) -> Option<(String, String)>) -> String {
    let parts: Vec<String> = query
        .iter()
        .map(|q| {
            if let Some(h) = matching::http_api_of(q.reader()) {
                if let Some(origin) = h.origin.filter(|o| !o.is_empty()) {
                    return format!("access to the web API at {origin}{}", h.path_prefix.unwrap_or_default());
                }
                if let Some(api) = h.api_name.filter(|a| !a.is_empty()) {
                    return format!("access to a “{api}” API of one of your grains");
                }
                return "access to a web API".into();
            }
            if matching::mail_address_of(q.reader()).is_some() {
                return "permission to send mail".into();
            }
            match q.reader().get_tags().ok().and_then(|t| t.iter().next()).map(|t| t.get_id()) {
                Some(id) => match interface(id) {
                    Some((title, app)) => format!("a “{title}”, which {app} grains provide"),
                    None => format!("a kind of object no app on this server provides (Cap'n Proto interface {id:#018x})"),
                },
                None => "a kind of capability no installed app describes".into(),
            }
        })
        .collect();
    if parts.is_empty() {
        return "The grain asked for nothing recognisable.".into();
    }
    format!("It asks for {}.", parts.join(", or "))
}

/// The title an installed app gives the raw interface `id`, and that app's title.
pub fn interface_title(server: &Server, id: u64) -> Option<(String, String)> {
    let apps = apps::list(&server.db).ok()?;
    apps.iter().find_map(|a| a.manifest.provides.iter().find(|p| p.interface_id == id).map(|p| (p.title.clone(), a.manifest.app_title.clone())))
}

/// Every option that answers one of `query`'s descriptors for `user` in `grain`.
pub fn options(server: &Server, user: &User, grain: &Grain, query: &[OwnedDescriptor]) -> anyhow::Result<Vec<PbOption>> {
    let mut out = Vec::new();
    let http_offer = matching::http_api_descriptor(None, None, None);
    let mail_offer = matching::mail_descriptor(None);
    let candidates = provider_grains(server, user, grain)?;
    for (i, q) in query.iter().enumerate() {
        let req = q.reader();
        if matching::offer_matches(req, http_offer.reader()).is_some() {
            if let Some(h) = matching::http_api_of(req).filter(|h| h.origin.as_deref().is_some_and(|o| !o.is_empty())) {
                if let Ok(origin) = granary_powerbox::drivers::http::parse_origin(h.origin.as_deref().unwrap_or_default()) {
                    let origin = origin.to_string();
                    let prefix = h.path_prefix.clone().unwrap_or_default();
                    out.push(PbOption {
                        id: format!("http:{i}"),
                        title: "Web API".into(),
                        verb_phrase: format!("may send HTTP requests to {origin}{prefix}"),
                        description: "Requests leave from this server, never from the grain; nothing else on the internet becomes reachable.".into(),
                        answers: i,
                        pending: Pending {
                            target: Target::HttpOrigin { origin: origin.clone(), path_prefix: prefix.clone() },
                            display: format!("may send HTTP requests to {origin}{prefix}"),
                            requirements: vec![],
                            granted_by: user.id.clone(),
                        },
                    });
                }
            }
        }
        if matching::offer_matches(req, mail_offer.reader()).is_some() {
            let wanted = matching::mail_address_of(req).flatten().unwrap_or_default();
            let fits = |a: &str| wanted.is_empty() || wanted.eq_ignore_ascii_case(a);
            // (id, title, address, description, requirements)
            let mut choices = Vec::new();
            if let Some(mine) = user.email.clone().filter(|m| fits(m)) {
                let why = "Your verified address. Through this server's mail relay, with the sender forced to it, at most 30 messages a minute; it ends if you change or remove the address.";
                let needs = vec![Requirement::UserOwnsAddress { user: user.id.clone(), address: mine.clone() }];
                choices.push(("mail-user", "Send mail as you", mine, why, needs));
            }
            let own = grain_address(server, &grain.id);
            if fits(&own) {
                choices.push(("mail", "Send mail", own, "Through this server's mail relay, with the sender forced to this address, at most 30 messages a minute.", vec![]));
            }
            for (id, title, address, why, requirements) in choices {
                out.push(PbOption {
                    id: format!("{id}:{i}"),
                    title: title.into(),
                    verb_phrase: format!("may send mail as {address}"),
                    description: why.into(),
                    answers: i,
                    pending: Pending { display: format!("may send mail as {address}"), target: Target::SendMail { address }, requirements, granted_by: user.id.clone() },
                });
            }
        }
        out.extend(crate::powerbox_objects::interface_options(i, q, &candidates, &user.id));
        for (g, app, perms) in &candidates {
            for api in app.manifest.provides.iter().filter(|p| p.interface_id == 0) {
                let offer = matching::http_api_descriptor(None, None, Some(&api.api));
                if matching::offer_matches(req, offer.reader()).is_none() || !holds_all(perms, &api.permissions) {
                    continue;
                }
                let display = format!("may use {} in “{}”", api.title, g.title);
                out.push(PbOption {
                    id: format!("grain:{}:{}:{i}", g.id, api.api),
                    title: g.title.clone(),
                    verb_phrase: format!("{} ({})", api.title, app.manifest.app_title),
                    description: format!("The grain gets this API of “{}” for as long as you keep your access to it.", g.title),
                    answers: i,
                    pending: Pending {
                        target: Target::GrainApi { grain: g.id.clone(), api: api.api.clone(), path_prefix: api.path_prefix.clone(), permissions: api.permissions.clone() },
                        display,
                        requirements: vec![Requirement::UserHasPermissions { user: user.id.clone(), grain: g.id.clone(), permissions: api.permissions.clone() }],
                        granted_by: user.id.clone(),
                    },
                });
            }
        }
    }
    Ok(out)
}

/// The user's grains (own and shared, not in the trash, not `except`) whose app provides APIs,
/// with the user's permissions there.
fn provider_grains(server: &Server, user: &User, except: &Grain) -> anyhow::Result<Vec<(Grain, apps::InstalledApp, Vec<bool>)>> {
    let world = ShellWorld { db: &server.db };
    let mut ids: Vec<String> = grains::list_owned(&server.db, &user.id)?.into_iter().map(|g| g.id).collect();
    ids.extend(sharing::shared_with(&server.db, &user.id)?);
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids.into_iter().filter(|id| *id != except.id) {
        let Some(g) = server.db.get(&grains::GRAINS, &id)? else { continue };
        let Some(app) = apps::get(&server.db, &g.package_id)? else { continue };
        if app.manifest.provides.is_empty() {
            continue;
        }
        if let Some(perms) = world.user_permissions(&user.id, &g.id) {
            out.push((g, app, perms));
        }
    }
    Ok(out)
}

/// Decodes the JSON list of base64url descriptors the dialog sends.
pub fn parse_query(json: &str) -> Result<Vec<OwnedDescriptor>, String> {
    let list: Vec<String> = serde_json::from_str(json).map_err(|_| "the request's query must be a list of descriptors".to_owned())?;
    if list.is_empty() {
        return Err("a powerbox request carries at least one descriptor".into());
    }
    matching::decode_request(&list).map_err(|e| e.to_string())
}

/// The live capability for `target`, wrapped in a membrane for `live`.
pub fn live_capability(server: &Rc<Server>, live: LiveGrant) -> capnp::capability::Client {
    use granary_powerbox::drivers::{http, mail_send};
    let inner: capnp::capability::Client = match &live.target {
        Target::HttpOrigin { origin, path_prefix } => match http::parse_origin(origin) {
            Ok(o) => http::http_session(o, path_prefix.clone(), server.powerbox.net.clone(), server.ex.clone()).client,
            Err(e) => broken(format!("{e}")),
        },
        Target::SendMail { address } => {
            let (db, net) = (server.db.clone(), server.powerbox.net.clone());
            let relay: Rc<dyn Fn() -> Option<mail_send::SmtpRelay>> =
                Rc::new(move || crate::settings::load(&db).ok()?.relay(net.borrow().extra_root_certs.clone()));
            // One rate per address (a grain's own address is the grain's): restoring again
            // does not reset it.
            let rate = server.powerbox.mail_rates.borrow_mut().entry(address.clone()).or_insert_with(|| mail_send::SendRate::new(30)).clone();
            mail_send::mail_sender(address.clone(), relay, rate).client
        }
        Target::GrainApi { grain, path_prefix, permissions, .. } => {
            let user = live.granted_by.clone().unwrap_or_default();
            let provider = crate::powerbox_provider::ProviderSession::new(server, grain.clone(), path_prefix.clone(), permissions.clone(), user);
            let client: granary_schema::web_session_capnp::web_session::Client = capnp_rpc::new_client(provider);
            client.client
        }
        Target::GrainObject { grain, interface_id, descriptor, permissions } => {
            let user = live.granted_by.clone().unwrap_or_default();
            let object = crate::powerbox_objects::ProvidedObject::new(server, grain.clone(), *interface_id, descriptor.clone(), permissions.clone(), user);
            crate::powerbox_objects::ProvidedObject::client(object)
        }
    };
    server.powerbox.membranes.wrap(inner, live)
}

/// `granary serve --smtp-listen ADDR`: mail to `<grain id>@<mail domain>` goes to the grain's
/// `MainView.deliverMail` (the grain is started if needed).
pub fn start_smtp(server: &Rc<Server>, addr: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use granary_powerbox::drivers::mail_receive::{serve_smtp, DeliverError, Delivery, MailReceiver, IDLE_TIMEOUT};
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen for mail on {addr}; pass another --smtp-listen"))?;
    // The setting is live: the listener reads it for each connection.
    let weak = Rc::downgrade(server);
    let domain: Rc<dyn Fn() -> String> = Rc::new(move || weak.upgrade().map(|s| mail_domain(&s)).unwrap_or_default());
    let db = server.db.clone();
    let accepts = Rc::new(move |grain: &str| matches!(db.get(&grains::GRAINS, grain), Ok(Some(g)) if g.trashed.is_none()));
    let weak = Rc::downgrade(server);
    let deliver = Rc::new(move |grain: String, d: Delivery| -> futures::future::LocalBoxFuture<'static, Result<(), DeliverError>> {
        let weak = weak.clone();
        Box::pin(async move {
            let server = weak.upgrade().ok_or_else(|| DeliverError::Failed("the server is stopping".into()))?;
            let g = server.db.get(&grains::GRAINS, &grain).ok().flatten().ok_or_else(|| DeliverError::NoSuchGrain(grain.clone()))?;
            let app = apps::get(&server.db, &g.package_id).ok().flatten().ok_or_else(|| DeliverError::Failed("the grain's app is not installed".into()))?;
            let limits = server.db.get(&apps::APP_LIMITS, &app.app_id).ok().flatten();
            let view = server.runner.main_view(&server.ex, &g, &app, limits).await.map_err(|e| DeliverError::Failed(format!("{e:#}")))?;
            server.runner.keep_alive(&server.ex, &g.id, server.grain_core(&g.id));
            let mut req = view.deliver_mail_request();
            {
                let mut m = req.get().init_message();
                m.set_envelope_from(d.envelope_from.as_str());
                let mut to = m.reborrow().init_envelope_to(d.envelope_to.len() as u32);
                for (i, t) in d.envelope_to.iter().enumerate() {
                    to.set(i as u32, t.as_str());
                }
                m.set_data(&d.data);
            }
            req.send().promise.await.map_err(|e| DeliverError::Failed(e.extra))?;
            tracing::info!(grain = %g.id, bytes = d.data.len(), "mail delivered to a grain");
            Ok(())
        })
    });
    eprintln!("Accepting mail for <grain id>@{} on {addr}", domain());
    let receiver = Rc::new(MailReceiver { domain, accepts, deliver, idle_timeout: IDLE_TIMEOUT });
    server.ex.spawn(serve_smtp(async_io::Async::new(listener)?, receiver, server.ex.clone())).detach();
    Ok(())
}

/// A capability whose every call fails with `why`.
fn broken(why: String) -> capnp::capability::Client {
    capnp_rpc::new_broken_cap(capnp::Error::failed(why))
}

#[cfg(test)]
mod tests {
    use super::{describe_request, holds_all, intersect};
    use granary_powerbox::matching;

    #[test]
    fn requests_are_described_in_words_and_interfaces_by_the_name_their_app_gives_them() {
        let known = |id: u64| (id == 0xa238_4a22_bc95_e238).then(|| ("Counter".to_owned(), "Tally".to_owned()));
        let ask = |q: Vec<matching::OwnedDescriptor>| describe_request(&q, &known);
        assert_eq!(ask(vec![matching::interface_descriptor(0xa238_4a22_bc95_e238)]), "It asks for a “Counter”, which Tally grains provide.");
        assert_eq!(
            ask(vec![matching::interface_descriptor(0xb5e3_f0c2_a9d8_4f61)]),
            "It asks for a kind of object no app on this server provides (Cap'n Proto interface 0xb5e3f0c2a9d84f61)."
        );
        assert_eq!(
            ask(vec![matching::http_api_descriptor(None, None, Some("notes")), matching::mail_descriptor(None)]),
            "It asks for access to a “notes” API of one of your grains, or permission to send mail."
        );
    }

    #[test]
    fn permission_sets_intersect_and_compare_flag_by_flag() {
        assert_eq!(intersect(&[true, true, false], &[true, false, true]), [true, false, false]);
        assert_eq!(intersect(&[true, true], &[true]), [true, false], "a shorter side lacks the rest");
        assert!(holds_all(&[true, false, true], &[true, false, true]));
        assert!(holds_all(&[true, false, true], &[false, false, true]), "a superset holds");
        assert!(holds_all(&[true], &[]), "nothing needed");
        assert!(!holds_all(&[true, false], &[false, true]));
        assert!(!holds_all(&[true], &[true, true]), "beyond what is held is missing");
    }
}
