//! Membranes over a real two-party RPC connection (a Unix socket pair, both vats on one
//! executor): the server side wraps a `MailSender` and hands it out through a test `GrainApi`.

use super::*;
use crate::requirements::FakeWorld;
use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use capnp::capability::Rc as CapRc;
use capnp::Error;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::channel::mpsc;
use futures::{AsyncReadExt, StreamExt};
use granary_schema::grain_capnp::grain_api;
use granary_schema::mail_capnp::mail_sender;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Answers `send` with "<to,…>:<message length>"; a message "block" waits until cancelled.
struct FakeSender {
    started: mpsc::UnboundedSender<()>,
    cancelled: Rc<Cell<u32>>,
}

struct CountDrop(Rc<Cell<u32>>);
impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

impl mail_sender::Server for FakeSender {
    async fn send(self: CapRc<Self>, params: mail_sender::SendParams, mut results: mail_sender::SendResults) -> Result<(), Error> {
        let p = params.get()?;
        let to: Vec<String> = p.get_to()?.iter().map(|t| t.unwrap().to_string().unwrap()).collect();
        let message = p.get_message()?.to_vec();
        if message == b"block" {
            let _count = CountDrop(self.cancelled.clone());
            let _ = self.started.unbounded_send(());
            futures::future::pending::<()>().await;
        }
        results.get().set_message_id(format!("{}:{}", to.join(","), message.len()));
        Ok(())
    }
}

/// `restore` hands out `handed_out`; `save` answers the identified membrane's display text as
/// its token ("" when `identify` found nothing).
struct TestGrainApi {
    registry: MembraneRegistry,
    handed_out: capnp::capability::Client,
}

impl grain_api::Server for TestGrainApi {
    async fn restore(self: CapRc<Self>, _: grain_api::RestoreParams, mut results: grain_api::RestoreResults) -> Result<(), Error> {
        results.get().init_cap().set_as_capability(self.handed_out.hook.add_ref());
        Ok(())
    }

    async fn save(self: CapRc<Self>, params: grain_api::SaveParams, mut results: grain_api::SaveResults) -> Result<(), Error> {
        let cap: capnp::capability::Client = params.get()?.get_cap().get_as_capability()?;
        let found = self.registry.identify(&cap).await;
        results.get().set_token(found.map(|l| l.display).unwrap_or_default().as_bytes());
        Ok(())
    }
}

fn live(id: &str, ancestry: &[&str], requirements: Vec<Requirement>) -> LiveGrant {
    LiveGrant {
        key: LiveKey::Grant(GrantId(id.into())),
        ancestry: ancestry.iter().map(|a| GrantId((*a).into())).collect(),
        requirements,
        target: Target::SendMail { address: "g1@example.com".into() },
        display: format!("may send mail as g1@example.com ({id})"),
        owner_grain: Some("g1".into()),
        expires: None,
        granted_by: Some("ada".into()),
    }
}

struct Harness {
    registry: MembraneRegistry,
    /// The far side's view of the server's `GrainApi`.
    remote: grain_api::Client,
    started: mpsc::UnboundedReceiver<()>,
    cancelled: Rc<Cell<u32>>,
}

/// Connects a client vat to a server vat whose `GrainApi.restore` hands out a membrane (made
/// with `grant`) around a fresh `FakeSender`.
fn harness(ex: &LocalExecutor<'static>, grant: LiveGrant) -> Harness {
    let (tx, started) = mpsc::unbounded();
    let cancelled = Rc::new(Cell::new(0));
    let sender: mail_sender::Client = capnp_rpc::new_client(FakeSender { started: tx, cancelled: cancelled.clone() });
    let registry = MembraneRegistry::new();
    let handed_out = registry.wrap(sender.client, grant);
    let api: grain_api::Client = capnp_rpc::new_client(TestGrainApi { registry: registry.clone(), handed_out });

    let remote = connect(ex, api);
    Harness { registry, remote, started, cancelled }
}

/// `api` as seen from another vat over a Unix socket pair.
fn connect(ex: &LocalExecutor<'static>, api: grain_api::Client) -> grain_api::Client {
    let (a, b) = UnixStream::pair().unwrap();
    let (ar, aw) = Async::new(a).unwrap().split();
    let server = RpcSystem::new(Box::new(twoparty::VatNetwork::new(ar, aw, Side::Server, Default::default())), Some(api.client));
    ex.spawn(server).detach();
    let (br, bw) = Async::new(b).unwrap().split();
    let mut client = RpcSystem::new(Box::new(twoparty::VatNetwork::new(br, bw, Side::Client, Default::default())), None);
    let remote: grain_api::Client = client.bootstrap(Side::Server);
    ex.spawn(client).detach();
    remote
}

/// A vat in the middle (like the supervisor between the app and the server): forwards
/// `restore` and `save` to the server's `GrainApi`, passing the capabilities along.
struct Middle(grain_api::Client);

impl grain_api::Server for Middle {
    async fn restore(self: CapRc<Self>, _: grain_api::RestoreParams, mut results: grain_api::RestoreResults) -> Result<(), Error> {
        let response = self.0.restore_request().send().promise.await?;
        let cap: capnp::capability::Client = response.get()?.get_cap().get_as_capability()?;
        results.get().init_cap().set_as_capability(cap.hook);
        Ok(())
    }

    async fn save(self: CapRc<Self>, params: grain_api::SaveParams, mut results: grain_api::SaveResults) -> Result<(), Error> {
        let cap: capnp::capability::Client = params.get()?.get_cap().get_as_capability()?;
        let mut req = self.0.save_request();
        req.get().init_cap().set_as_capability(cap.hook);
        let response = req.send().promise.await?;
        results.get().set_token(response.get()?.get_token()?);
        Ok(())
    }
}

async fn restore(remote: &grain_api::Client) -> mail_sender::Client {
    let response = remote.restore_request().send().promise.await.unwrap();
    response.get().unwrap().get_cap().get_as_capability().unwrap()
}

async fn send(sender: &mail_sender::Client, message: &str) -> Result<String, Error> {
    let mut req = sender.send_request();
    let mut to = req.get().init_to(2);
    to.set(0, "a@x");
    to.set(1, "b@y");
    req.get().set_message(message.as_bytes());
    let response = req.send().promise.await?;
    Ok(response.get()?.get_message_id()?.to_string().unwrap())
}

fn run<T>(f: impl FnOnce(&'static LocalExecutor<'static>) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>>) -> T {
    let ex: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
    async_io::block_on(ex.run(f(ex)))
}

fn assert_revoked(e: Error, id: &str) {
    let text = e.to_string();
    assert!(text.contains(&format!("revoked: may send mail as g1@example.com ({id})")), "{text}");
    assert!(text.contains("ask the user to grant it again"), "{text}");
}

#[test]
fn calls_pass_while_live_and_fail_once_the_grant_is_revoked() {
    run(|ex| {
        Box::pin(async move {
            let h = harness(ex, live("grant-a", &["grant-a"], vec![]));
            let sender = restore(&h.remote).await;
            assert_eq!(send(&sender, "hello").await.unwrap(), "a@x,b@y:5", "params and results cross the membrane");
            assert_eq!(h.registry.live_count(), 1);
            assert_eq!(h.registry.take_used(), vec![GrantId("grant-a".into())]);
            assert_eq!(h.registry.take_used(), vec![], "taken");

            assert_eq!(h.registry.revoke_grant(&GrantId("unrelated".into())), 0);
            assert_eq!(send(&sender, "still").await.unwrap(), "a@x,b@y:5");
            assert_eq!(h.registry.revoke_grant(&GrantId("grant-a".into())), 1);
            assert_revoked(send(&sender, "hello").await.unwrap_err(), "grant-a");
            assert_eq!(h.registry.live_count(), 0);
            // A new reference to the same membrane is just as dead.
            assert_revoked(send(&restore(&h.remote).await, "x").await.unwrap_err(), "grant-a");
        })
    });
}

#[test]
fn a_call_in_flight_is_cancelled_by_revocation() {
    run(|ex| {
        Box::pin(async move {
            let mut h = harness(ex, live("grant-b", &["grant-b"], vec![]));
            let sender = restore(&h.remote).await;
            let blocked = ex.spawn(async move { send(&sender, "block").await });
            h.started.next().await.unwrap();
            assert_eq!(h.cancelled.get(), 0);
            let revoked_at = Instant::now();
            h.registry.revoke_grant(&GrantId("grant-b".into()));
            let answer = futures::future::select(blocked, Box::pin(Timer::after(Duration::from_secs(5)))).await;
            let futures::future::Either::Left((result, _)) = answer else { panic!("the blocked call was not cancelled") };
            assert_revoked(result.unwrap_err(), "grant-b");
            assert!(revoked_at.elapsed() < Duration::from_secs(1));
            assert_eq!(h.cancelled.get(), 1, "the call to the real object was dropped too");
        })
    });
}

#[test]
fn recheck_revokes_when_a_requirement_stops_holding() {
    run(|ex| {
        Box::pin(async move {
            let needs_admin = vec![Requirement::UserIsAdmin { user: "ada".into() }];
            let h = harness(ex, live("grant-c", &["grant-c"], needs_admin));
            let sender = restore(&h.remote).await;
            let mut world = FakeWorld::default();
            world.admins.insert("ada".into());
            assert_eq!(h.registry.recheck(&world), 0);
            assert_eq!(send(&sender, "ok").await.unwrap(), "a@x,b@y:2");
            world.admins.clear();
            assert_eq!(h.registry.recheck(&world), 1);
            assert_revoked(send(&sender, "ok").await.unwrap_err(), "grant-c");
        })
    });
}

#[test]
fn revoking_an_ancestor_revokes_the_descendant() {
    run(|ex| {
        Box::pin(async move {
            let h = harness(ex, live("child", &["child", "parent", "root"], vec![]));
            let sender = restore(&h.remote).await;
            assert_eq!(h.registry.revoke_grant(&GrantId("sibling".into())), 0);
            assert_eq!(send(&sender, "a").await.unwrap(), "a@x,b@y:1");
            assert_eq!(h.registry.revoke_grant(&GrantId("parent".into())), 1);
            assert_revoked(send(&sender, "a").await.unwrap_err(), "child");
        })
    });
}

#[test]
fn revoke_owned_by_revokes_what_a_grain_holds() {
    run(|ex| {
        Box::pin(async move {
            let h = harness(ex, live("held", &["held"], vec![]));
            let sender = restore(&h.remote).await;
            assert_eq!(h.registry.revoke_owned_by("g2"), 0);
            assert_eq!(send(&sender, "a").await.unwrap(), "a@x,b@y:1");
            assert_eq!(h.registry.revoke_owned_by("g1"), 1);
            assert_revoked(send(&sender, "a").await.unwrap_err(), "held");
        })
    });
}

#[test]
fn expiry_revokes() {
    run(|ex| {
        Box::pin(async move {
            let mut grant = live("expiring", &["expiring"], vec![]);
            grant.expires = Some(100);
            let h = harness(ex, grant);
            let sender = restore(&h.remote).await;
            assert_eq!(h.registry.revoke_expired(99), 0);
            assert_eq!(send(&sender, "a").await.unwrap(), "a@x,b@y:1");
            assert_eq!(h.registry.revoke_expired(100), 1);
            assert_revoked(send(&sender, "a").await.unwrap_err(), "expiring");
        })
    });
}

#[test]
fn revoke_key_revokes_a_claim() {
    run(|ex| {
        Box::pin(async move {
            let mut grant = live("claimed", &[], vec![]);
            grant.key = LiveKey::Claim(7);
            let h = harness(ex, grant);
            let sender = restore(&h.remote).await;
            assert_eq!(send(&sender, "a").await.unwrap(), "a@x,b@y:1");
            assert_eq!(h.registry.take_used(), vec![], "claims have no grant to touch");
            assert_eq!(h.registry.revoke_key(&LiveKey::Claim(8)), 0);
            assert_eq!(h.registry.revoke_owned_by("g2"), 0);
            assert_eq!(h.registry.revoke_key(&LiveKey::Claim(7)), 1);
            assert_revoked(send(&sender, "a").await.unwrap_err(), "claimed");
        })
    });
}

#[test]
fn identify_finds_a_membrane_that_came_back_and_nothing_else() {
    run(|ex| {
        Box::pin(async move {
            let h = harness(ex, live("grant-d", &["grant-d"], vec![]));
            let save = |cap: capnp::capability::Client| {
                let mut req = h.remote.save_request();
                req.get().init_cap().set_as_capability(cap.hook);
                async move { String::from_utf8(req.send().promise.await.unwrap().get().unwrap().get_token().unwrap().to_vec()).unwrap() }
            };
            // The membrane went to the client vat and comes back through the connection.
            let sender = restore(&h.remote).await;
            assert_eq!(save(sender.clone().client).await, "may send mail as g1@example.com (grant-d)");

            // A capability the client vat made itself is foreign.
            let (tx, _rx) = mpsc::unbounded();
            let own: mail_sender::Client = capnp_rpc::new_client(FakeSender { started: tx, cancelled: Rc::new(Cell::new(0)) });
            assert_eq!(save(own.client).await, "");
            // So is the server's own GrainApi, sent back to it.
            assert_eq!(save(h.remote.clone().client).await, "");
            // And a revoked membrane cannot be saved.
            h.registry.revoke_grant(&GrantId("grant-d".into()));
            assert_eq!(save(sender.client).await, "");
        })
    });
}

#[test]
fn a_membrane_nobody_holds_is_not_live() {
    let registry = MembraneRegistry::new();
    let (tx, _rx) = mpsc::unbounded();
    let sender: mail_sender::Client = capnp_rpc::new_client(FakeSender { started: tx, cancelled: Rc::new(Cell::new(0)) });
    let wrapped = registry.wrap(sender.client, live("e", &["e"], vec![]));
    assert_eq!(registry.live_count(), 1);
    drop(wrapped);
    assert_eq!(registry.live_count(), 0);
}

#[test]
fn identify_finds_a_membrane_that_went_through_two_connections_and_back() {
    run(|ex| {
        Box::pin(async move {
            let h = harness(ex, live("grant-g", &["grant-g"], vec![]));
            // server <-> middle <-> app, like server <-> supervisor <-> grain.
            let middle: grain_api::Client = capnp_rpc::new_client(Middle(h.remote.clone()));
            let app_side = connect(ex, middle);
            let sender = restore(&app_side).await;
            assert_eq!(send(&sender, "far").await.unwrap(), "a@x,b@y:3");
            let mut req = app_side.save_request();
            req.get().init_cap().set_as_capability(sender.client.hook.add_ref());
            let token = req.send().promise.await.unwrap().get().unwrap().get_token().unwrap().to_vec();
            assert_eq!(token, b"may send mail as g1@example.com (grant-g)");
            h.registry.revoke_grant(&GrantId("grant-g".into()));
            assert_revoked(send(&sender, "far").await.unwrap_err(), "grant-g");
        })
    });
}

#[test]
fn identify_waits_for_a_promise_to_resolve() {
    run(|ex| {
        Box::pin(async move {
            let registry = MembraneRegistry::new();
            let (tx, _rx) = mpsc::unbounded();
            let sender: mail_sender::Client = capnp_rpc::new_client(FakeSender { started: tx, cancelled: Rc::new(Cell::new(0)) });
            let wrapped = registry.wrap(sender.client, live("f", &["f"], vec![]));
            let (resolve, resolved) = futures::channel::oneshot::channel::<capnp::capability::Client>();
            let promise: capnp::capability::Client =
                capnp_rpc::new_future_client(async move { resolved.await.map_err(|_| Error::failed("gone".into())) });
            let registry2 = registry.clone();
            let found = ex.spawn(async move { registry2.identify(&promise).await });
            Timer::after(Duration::from_millis(20)).await;
            resolve.send(wrapped).ok().unwrap();
            assert_eq!(found.await.map(|l| l.key), Some(LiveKey::Grant(GrantId("f".into()))));
        })
    });
}

/// A `GrainApi` whose `save` calls the capability it is given and answers what it said, and
/// whose `restore` hands out a `FakeSender`: capabilities crossing the membrane both ways.
struct CapabilityEcho;

impl grain_api::Server for CapabilityEcho {
    async fn save(self: CapRc<Self>, params: grain_api::SaveParams, mut results: grain_api::SaveResults) -> Result<(), Error> {
        let sender: mail_sender::Client = params.get()?.get_cap().get_as_capability()?;
        let said = send(&sender, "via param").await?;
        results.get().set_token(said.as_bytes());
        Ok(())
    }

    async fn restore(self: CapRc<Self>, _: grain_api::RestoreParams, mut results: grain_api::RestoreResults) -> Result<(), Error> {
        let (tx, _rx) = mpsc::unbounded();
        let sender: mail_sender::Client = capnp_rpc::new_client(FakeSender { started: tx, cancelled: Rc::new(Cell::new(0)) });
        results.get().init_cap().set_as_capability(sender.client.hook);
        Ok(())
    }
}

#[test]
fn capabilities_in_params_and_results_cross_the_membrane() {
    run(|_| {
        Box::pin(async move {
            let registry = MembraneRegistry::new();
            let echo: grain_api::Client = capnp_rpc::new_client(CapabilityEcho);
            let wrapped: grain_api::Client = FromClientHook::new(registry.wrap(echo.client, live("h", &["h"], vec![])).hook);

            let (tx, _rx) = mpsc::unbounded();
            let ours: mail_sender::Client = capnp_rpc::new_client(FakeSender { started: tx, cancelled: Rc::new(Cell::new(0)) });
            let mut req = wrapped.save_request();
            req.get().init_cap().set_as_capability(ours.client.hook);
            let token = req.send().promise.await.unwrap().get().unwrap().get_token().unwrap().to_vec();
            assert_eq!(token, b"a@x,b@y:9");

            let response = wrapped.restore_request().send().promise.await.unwrap();
            let returned: mail_sender::Client = response.get().unwrap().get_cap().get_as_capability().unwrap();
            assert_eq!(send(&returned, "back").await.unwrap(), "a@x,b@y:4");
        })
    });
}

#[test]
fn saving_a_restored_capability_makes_a_child_that_inherits() {
    use crate::grants::GrantStore;
    use crate::model::{Owner, OwnerMatch};
    let db = granary_store::Db::memory(&[]).unwrap();
    let store = GrantStore::new(&db);
    let needs = vec![Requirement::UserIsAdmin { user: "ada".into() }];
    let mut root = live("root", &[], needs.clone()).to_new_grant(Owner::Grain { grain: "g1".into(), label: "l".into() });
    assert_eq!(root.granted_by.as_deref(), Some("ada"));
    assert_eq!((root.parent.clone(), &root.requirements), (Some(GrantId("root".into())), &Vec::new()), "a Grant key becomes the parent");
    root.parent = None;
    root.requirements = needs.clone();
    root.expires = Some(500);
    let root_token = store.save(root, 1).unwrap();
    let restored = store.restore(&root_token, &OwnerMatch::Grain("g1".into()), 2).unwrap();
    let live_root = LiveGrant::from_restored(restored.clone(), Some("g1".into()));
    assert_eq!(live_root.key, LiveKey::Grant(root_token.grant_id()));
    assert_eq!((live_root.expires, &live_root.requirements), (Some(500), &needs));

    let child = live_root.to_new_grant(Owner::Grain { grain: "g2".into(), label: "c".into() });
    assert_eq!(child.parent, Some(root_token.grant_id()));
    assert_eq!(child.granted_by.as_deref(), Some("ada"), "a child keeps who granted the root");
    let child_token = store.save(child, 3).unwrap();
    let restored_child = store.restore(&child_token, &OwnerMatch::Grain("g2".into()), 4).unwrap();
    assert_eq!(restored_child.target, restored.target);
    assert_eq!(restored_child.requirements, needs, "inherited once, not copied");
    assert_eq!(restored_child.expires, Some(500));
    assert_eq!(restored_child.ancestry, vec![child_token.grant_id(), root_token.grant_id()]);

    // From a claim: no parent, the claim's own requirements and expiry are recorded.
    let mut claimed = live("x", &[], needs.clone());
    claimed.key = LiveKey::Claim(1);
    claimed.expires = Some(9);
    let from_claim = claimed.to_new_grant(Owner::User { user: "ada".into() });
    assert_eq!((from_claim.parent, from_claim.requirements, from_claim.expires), (None, needs, Some(9)));
}
