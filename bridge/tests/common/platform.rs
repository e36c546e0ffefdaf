//! The supervisor's side of the powerbox, faked: a `GrainApi` that saves capabilities under
//! tokens it records, restores them as fresh `WebSession` / `MailSender` objects (or fails
//! "revoked: …"), a `SessionContext` whose claims hand out those objects, and the harness that
//! connects the bridge to them over a socketpair and starts its local API on a free port.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use async_executor::LocalExecutor;
use async_io::Async;
use capnp::capability::Client as AnyClient;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, CapabilityServerSet, RpcSystem};
use futures::channel::oneshot;
use futures::AsyncReadExt;
use granary_bridge::{Bridge, BridgeConfig};
use granary_schema::grain_capnp::{grain_api, main_view, session_context, session_params};
use granary_schema::mail_capnp::mail_sender;
use granary_schema::util_capnp::byte_stream;
use granary_schema::web_session_capnp::{request, web_session};

/// The message a revoked capability fails with (as the server's membrane words it).
pub const REVOKED: &str = "revoked: may send HTTP requests to http://api.example.org (its grant was revoked or a \
                           requirement no longer holds; ask the user to grant it again)";

/// A request a fake `WebSession` received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    /// "none", "inline" or "streamed(N)".
    pub body_kind: String,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| String::from_utf8_lossy(v).into())
    }
}

/// What the fakes saw and how they behave.
#[derive(Default)]
pub struct Record {
    /// `claimRequest` calls: (claim token, required permissions).
    pub claims: Vec<(String, Vec<bool>)>,
    /// `save`d tokens: token → (label, what the capability is: "web" or "mail").
    pub saved: HashMap<Vec<u8>, (String, &'static str)>,
    /// `drop`ped tokens.
    pub dropped: Vec<Vec<u8>>,
    /// `restore` calls.
    pub restores: u32,
    /// When set, `restore` fails with this message (`failed`).
    pub restore_fails: Option<String>,
    /// Restored objects of a generation ≤ this fail every call with [`REVOKED`].
    pub revoked_through: u32,
    /// Requests the fake WebSessions got.
    pub requests: Vec<Seen>,
    /// Messages the fake MailSenders got: (recipients, data).
    pub mail: Vec<(Vec<String>, Vec<u8>)>,
    /// `fulfillRequest` calls: what they carried.
    pub fulfilled: Vec<Fulfilled>,
    /// `offer` calls: (cap is null, tag ids, the tag's value is null, title, description).
    pub offered: Vec<(bool, Vec<u64>, bool, String, String)>,
}

/// One `fulfillRequest` as the fake context saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fulfilled {
    pub cap_is_null: bool,
    /// The descriptor's tag ids.
    pub tags: Vec<u64>,
    pub api_name: String,
    /// `None` when null.
    pub path_prefix: Option<String>,
    pub origin_is_null: bool,
    pub title: String,
    pub verb_phrase: String,
}

pub type Shared = Rc<RefCell<Record>>;

/// A fake remote web server: `/echo` answers with the request body, streamed; `/cut` declares
/// 1 MiB and stops after 128 KiB; anything else answers 200 with a small inline body naming
/// the path.
pub struct FakeWebSession {
    record: Shared,
    generation: u32,
    ex: Rc<LocalExecutor<'static>>,
}

impl FakeWebSession {
    fn check(&self) -> Result<(), capnp::Error> {
        if self.generation <= self.record.borrow().revoked_through {
            return Err(capnp::Error::failed(REVOKED.into()));
        }
        Ok(())
    }
}

/// Collects a streamed request body; signals `done`.
struct Collect {
    data: Rc<RefCell<Vec<u8>>>,
    done: RefCell<Option<oneshot::Sender<()>>>,
}

impl byte_stream::Server for Collect {
    async fn write(self: capnp::capability::Rc<Self>, params: byte_stream::WriteParams) -> Result<(), capnp::Error> {
        self.data.borrow_mut().extend_from_slice(params.get()?.get_data()?);
        Ok(())
    }
    async fn done(self: capnp::capability::Rc<Self>, _: byte_stream::DoneParams, _: byte_stream::DoneResults) -> Result<(), capnp::Error> {
        if let Some(tx) = self.done.borrow_mut().take() {
            let _ = tx.send(());
        }
        Ok(())
    }
}

impl web_session::Server for FakeWebSession {
    async fn request(
        self: capnp::capability::Rc<Self>,
        params: web_session::RequestParams,
        mut results: web_session::RequestResults,
    ) -> Result<(), capnp::Error> {
        self.check()?;
        let p = params.get()?;
        let req = p.get_request()?;
        let response_body = p.get_response_body()?;
        let mut seen = Seen {
            method: req.get_method()?.to_string()?,
            path: req.get_path()?.to_string()?,
            headers: req
                .get_headers()?
                .iter()
                .map(|h| Ok((h.get_name()?.to_string()?, h.get_value()?.to_vec())))
                .collect::<Result<_, capnp::Error>>()?,
            body_kind: String::new(),
            body: Vec::new(),
        };
        match req.get_body().which()? {
            request::body::None(()) => seen.body_kind = "none".into(),
            request::body::Inline(d) => {
                seen.body_kind = "inline".into();
                seen.body = d?.to_vec();
            }
            request::body::Streamed(n) => {
                seen.body_kind = format!("streamed({n})");
                let data = Rc::new(RefCell::new(Vec::new()));
                let (tx, rx) = oneshot::channel();
                let sink = Collect { data: data.clone(), done: RefCell::new(Some(tx)) };
                results.get().set_request_body(capnp_rpc::new_client(sink));
                results.set_pipeline()?;
                rx.await.map_err(|_| capnp::Error::failed("the request body was not finished".into()))?;
                seen.body = data.take();
            }
        }
        let echo = seen.path.starts_with("/echo").then(|| seen.body.clone());
        let cut = seen.path.starts_with("/cut");
        self.record.borrow_mut().requests.push(seen.clone());
        let mut r = results.get().init_response();
        let mut headers = r.reborrow().init_headers(3);
        for (i, (n, v)) in [("content-type", "text/plain"), ("x-remote", "yes"), ("connection", "x-remote")].iter().enumerate() {
            let mut h = headers.reborrow().get(i as u32);
            h.set_name(n);
            h.set_value(v.as_bytes());
        }
        if cut {
            // Declares 1 MiB, sends 128 KiB, then drops the stream without done().
            r.set_status(200);
            r.init_body().set_streamed(1 << 20);
            self.ex
                .spawn(async move {
                    for _ in 0..2 {
                        let mut w = response_body.write_request();
                        w.get().set_data(&[b'c'; 64 * 1024]);
                        w.send().await.unwrap();
                    }
                })
                .detach();
            return Ok(());
        }
        match echo {
            Some(body) => {
                r.set_status(201);
                r.init_body().set_streamed(body.len() as u64);
                self.ex
                    .spawn(async move {
                        for chunk in body.chunks(64 * 1024) {
                            let mut w = response_body.write_request();
                            w.get().set_data(chunk);
                            w.send().await.unwrap();
                        }
                        response_body.done_request().send().promise.await.unwrap();
                    })
                    .detach();
            }
            None => {
                r.set_status(200);
                r.init_body().set_inline(format!("remote saw {} {}", seen.method, seen.path).as_bytes());
            }
        }
        Ok(())
    }
}

/// A fake mail relay.
pub struct FakeMailSender {
    record: Shared,
    generation: u32,
}

impl mail_sender::Server for FakeMailSender {
    async fn send(self: capnp::capability::Rc<Self>, params: mail_sender::SendParams, mut results: mail_sender::SendResults) -> Result<(), capnp::Error> {
        if self.generation <= self.record.borrow().revoked_through {
            return Err(capnp::Error::failed(REVOKED.into()));
        }
        let p = params.get()?;
        let to = p.get_to()?.iter().map(|t| Ok(t?.to_string()?)).collect::<Result<Vec<_>, capnp::Error>>()?;
        let n = {
            let mut r = self.record.borrow_mut();
            r.mail.push((to, p.get_message()?.to_vec()));
            r.mail.len()
        };
        results.get().set_message_id(format!("<m{n}@relay.test>"));
        Ok(())
    }
}

/// What claims hand out and `save` recognises.
pub struct Fakes {
    pub record: Shared,
    web: RefCell<CapabilityServerSet<FakeWebSession, web_session::Client>>,
    mail: RefCell<CapabilityServerSet<FakeMailSender, mail_sender::Client>>,
    ex: Rc<LocalExecutor<'static>>,
}

impl Fakes {
    fn web(&self, generation: u32) -> AnyClient {
        let s = FakeWebSession { record: self.record.clone(), generation, ex: self.ex.clone() };
        self.web.borrow_mut().new_client(s).client
    }
    fn mail(&self, generation: u32) -> AnyClient {
        self.mail.borrow_mut().new_client(FakeMailSender { record: self.record.clone(), generation }).client
    }
}

/// `claimRequest("gc_web" | "gc_mail", perms)`; anything else is unknown.
pub struct FakeContext(Rc<Fakes>);

impl session_context::Server for FakeContext {
    async fn claim_request(
        self: capnp::capability::Rc<Self>,
        params: session_context::ClaimRequestParams,
        mut results: session_context::ClaimRequestResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let token = p.get_claim_token()?.to_string()?;
        self.0.record.borrow_mut().claims.push((token.clone(), p.get_required_permissions()?.iter().collect()));
        let cap = match token.as_str() {
            "gc_web" => self.0.web(u32::MAX),
            "gc_mail" => self.0.mail(u32::MAX),
            _ => {
                return Err(capnp::Error::failed(
                    "this powerbox claim is unknown, used, expired, or belongs to another session: ask the user to choose again".into(),
                ))
            }
        };
        results.get().init_cap().set_as_capability(cap.hook);
        Ok(())
    }

    /// Records the call; fails for the API name "refused", as the server does for what a
    /// chooser may not grant.
    async fn fulfill_request(
        self: capnp::capability::Rc<Self>,
        params: session_context::FulfillRequestParams,
        _: session_context::FulfillRequestResults,
    ) -> Result<(), capnp::Error> {
        use granary_schema::powerbox_capnp::http_api;
        let p = params.get()?;
        let d = p.get_descriptor()?;
        let tags: Vec<u64> = d.get_tags()?.iter().map(|t| t.get_id()).collect();
        let api: http_api::Reader = d.get_tags()?.get(0).get_value().get_as()?;
        let info = p.get_display_info()?;
        let f = Fulfilled {
            cap_is_null: p.get_cap().is_null(),
            tags,
            api_name: api.get_api_name()?.to_string()?,
            path_prefix: if api.has_path_prefix() { Some(api.get_path_prefix()?.to_string()?) } else { None },
            origin_is_null: !api.has_origin(),
            title: info.get_title()?.to_string()?,
            verb_phrase: info.get_verb_phrase()?.to_string()?,
        };
        let refused = f.api_name == "refused";
        self.0.record.borrow_mut().fulfilled.push(f);
        if refused {
            return Err(capnp::Error::failed("this session was not opened as a powerbox chooser".into()));
        }
        Ok(())
    }

    async fn offer(self: capnp::capability::Rc<Self>, params: session_context::OfferParams, _: session_context::OfferResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let tags = p.get_descriptor()?.get_tags()?;
        let info = p.get_display_info()?;
        let o = (
            p.get_cap().is_null(),
            tags.iter().map(|t| t.get_id()).collect(),
            tags.iter().all(|t| !t.has_value()),
            info.get_title()?.to_string()?,
            info.get_description()?.to_string()?,
        );
        self.0.record.borrow_mut().offered.push(o);
        Ok(())
    }
}

/// The supervisor's `GrainApi`.
pub struct FakeGrainApi(Rc<Fakes>);

impl grain_api::Server for FakeGrainApi {
    async fn save(self: capnp::capability::Rc<Self>, params: grain_api::SaveParams, mut results: grain_api::SaveResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let cap: AnyClient = p.get_cap().get_as_capability()?;
        let label = p.get_label()?.to_string()?;
        cap.when_resolved().await?;
        let web = self.0.web.borrow().get_local_server_of_resolved(&web_session::Client { client: cap.clone() }).is_some();
        let mail = self.0.mail.borrow().get_local_server_of_resolved(&mail_sender::Client { client: cap }).is_some();
        let kind = match (web, mail) {
            (true, _) => "web",
            (_, true) => "mail",
            _ => return Err(capnp::Error::failed("only capabilities obtained from the powerbox can be saved".into())),
        };
        let mut r = self.0.record.borrow_mut();
        let token: Vec<u8> = (0..32u8).map(|i| (r.saved.len() as u8).wrapping_mul(31).wrapping_add(i.wrapping_mul(7)).wrapping_add(250)).collect();
        r.saved.insert(token.clone(), (label, kind));
        results.get().set_token(&token);
        Ok(())
    }

    async fn restore(self: capnp::capability::Rc<Self>, params: grain_api::RestoreParams, mut results: grain_api::RestoreResults) -> Result<(), capnp::Error> {
        let token = params.get()?.get_token()?.to_vec();
        let (kind, generation) = {
            let mut r = self.0.record.borrow_mut();
            r.restores += 1;
            if let Some(why) = &r.restore_fails {
                return Err(capnp::Error::failed(why.clone()));
            }
            let kind = r.saved.get(&token).map(|(_, k)| *k).ok_or_else(|| capnp::Error::failed("no such token".into()))?;
            (kind, r.restores)
        };
        let cap = if kind == "web" { self.0.web(generation) } else { self.0.mail(generation) };
        results.get().init_cap().set_as_capability(cap.hook);
        Ok(())
    }

    async fn drop(self: capnp::capability::Rc<Self>, params: grain_api::DropParams, _: grain_api::DropResults) -> Result<(), capnp::Error> {
        let token = params.get()?.get_token()?.to_vec();
        let mut r = self.0.record.borrow_mut();
        if r.saved.remove(&token).is_none() {
            return Err(capnp::Error::failed("no such token".into()));
        }
        r.dropped.push(token);
        Ok(())
    }
}

/// The bridge connected to the fakes, its local API on `api`.
pub struct Platform {
    pub record: Shared,
    pub bridge: Rc<Bridge>,
    pub main_view: main_view::Client,
    pub api: std::net::SocketAddr,
    pub maildir: tempfile::TempDir,
    pub ex: Rc<LocalExecutor<'static>>,
    fakes: Rc<Fakes>,
}

impl Platform {
    /// Opens session `id` with a fake context, as the supervisor would.
    pub async fn open_session(&self, id: &str) {
        let mut req = self.main_view.new_session_request();
        req.get().set_context(capnp_rpc::new_client(FakeContext(self.fakes.clone())));
        let mut p = req.get().init_params();
        p.reborrow().init_user().set_id("u-alice");
        p.reborrow().init_permissions(3).set(0, true);
        p.set_session_id(id);
        p.set_kind(session_params::Kind::Ui);
        req.send().promise.await.unwrap();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `test` with a bridge (permissions read, write, admin; no app) connected to the fakes.
pub fn run<F, Fut>(test: F)
where
    F: FnOnce(Platform) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    run_with(|_| {}, test)
}

/// [`run`], with the bridge's config changed by `tweak` first.
pub fn run_with<F, Fut>(tweak: impl FnOnce(&mut BridgeConfig), test: F)
where
    F: FnOnce(Platform) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let ex = Rc::new(LocalExecutor::new());
    let ex2 = ex.clone();
    async_io::block_on(ex.run(async move {
        let maildir = tempfile::tempdir().unwrap();
        let listener = granary_bridge::local_api::bind(0).unwrap();
        let api = listener.get_ref().local_addr().unwrap();
        let mut config = BridgeConfig::new(free_port());
        config.permissions = vec!["read".into(), "write".into(), "admin".into()];
        config.api_port = api.port();
        config.maildir = maildir.path().join("mail");
        tweak(&mut config);
        let bridge = Rc::new(Bridge::new(config, ex2.clone()));
        let (a, b) = UnixStream::pair().unwrap();
        let (ar, aw) = Async::new(a).unwrap().split();
        let (br, bw) = Async::new(b).unwrap().split();
        ex2.spawn(granary_bridge::serve::connect_supervisor(&bridge, ar, aw)).detach();
        ex2.spawn(granary_bridge::local_api::serve(listener, bridge.clone())).detach();
        let record = Shared::default();
        let fakes = Rc::new(Fakes {
            record: record.clone(),
            web: RefCell::new(CapabilityServerSet::new()),
            mail: RefCell::new(CapabilityServerSet::new()),
            ex: ex2.clone(),
        });
        let grain_api: grain_api::Client = capnp_rpc::new_client(FakeGrainApi(fakes.clone()));
        let net = twoparty::VatNetwork::new(br, bw, Side::Server, Default::default());
        let mut rpc = RpcSystem::new(Box::new(net), Some(grain_api.client));
        let main_view: main_view::Client = rpc.bootstrap(Side::Client);
        ex2.spawn(rpc).detach();
        test(Platform { record, bridge, main_view, api, maildir, ex: ex2, fakes }).await;
    }));
}
