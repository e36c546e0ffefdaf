//! The counter's pieces over real loopback sockets: its `AppObjects` as the bridge calls it,
//! and its use of another counter through a `GrainApi` as the bridge's Cap'n Proto endpoint
//! serves it (played here by a fake that restores one token).

use crate::link::{Answer, Link, Op};
use crate::remote::{self, base64url, base64url_decode};
use crate::tally::{CounterImpl, Tally, COUNTER_ID};
use capnp_rpc::rpc_twoparty_capnp::Side;
use futures::AsyncReadExt;
use granary_schema::grain_capnp::{app_objects, grain_api};
use granary_schema::sample_capnp::counter;
use std::net::TcpListener;
use std::sync::Arc;

fn temp_var(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("counter-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_query_asks_for_a_counter_of_any_kind() {
    assert_eq!(COUNTER_ID, 0xa238_4a22_bc95_e238);
    let bytes = base64url_decode(&remote::counter_query()).unwrap();
    let msg = capnp::serialize_packed::read_message(&mut &bytes[..], Default::default()).unwrap();
    let d: granary_schema::powerbox_capnp::powerbox_descriptor::Reader = msg.get_root().unwrap();
    let tags = d.get_tags().unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags.get(0).get_id(), COUNTER_ID);
    assert!(!tags.get(0).has_value());
    for n in 0..8u8 {
        let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(97).wrapping_add(200)).collect();
        assert_eq!(base64url_decode(&base64url(&data)).unwrap(), data);
    }
    assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    assert_eq!(remote::decode_token("gs_AQID"), Some(vec![1, 2, 3]));
    assert_eq!(remote::decode_token("gs_!!"), None);
}

#[test]
fn the_tally_persists_and_survives_a_restart() {
    let var = temp_var("persist");
    let t = Tally::open(var.clone()).unwrap();
    assert_eq!(t.add(5).unwrap(), 5);
    assert_eq!(t.add(-2).unwrap(), 3);
    t.update(|s| s.name = "Kitchen".into()).unwrap();
    let again = Tally::open(var.clone()).unwrap().state();
    assert_eq!((again.total, again.name.as_str()), (3, "Kitchen"));
    std::fs::write(var.join("counter.json"), "{\"total\": \"x\"}").unwrap();
    assert!(Tally::open(var.clone()).err().unwrap().contains("no integer \"total\""));
    std::fs::remove_dir_all(var).unwrap();
}

/// Runs `f` with a two-party connection to `addr` whose bootstrap is `T`.
fn connect<T: capnp::capability::FromClientHook, R>(addr: std::net::SocketAddr, f: impl AsyncFnOnce(T) -> R) -> R {
    async_io::block_on(async {
        let stream = async_io::Async::<std::net::TcpStream>::connect(addr).await.unwrap();
        let (r, w) = stream.split();
        let mut rpc = capnp_rpc::RpcSystem::new(Box::new(granary_schema::vat_network(r, w, Side::Client)), None);
        let client: T = rpc.bootstrap(Side::Server);
        match futures::future::select(rpc, Box::pin(f(client))).await {
            futures::future::Either::Right((v, _)) => v,
            futures::future::Either::Left(_) => panic!("the connection ended"),
        }
    })
}

#[test]
fn app_objects_provides_the_tally_as_a_counter_with_the_choosers_permission() {
    let var = temp_var("objects");
    let tally = Arc::new(Tally::open(var.clone()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = tally.clone();
    std::thread::spawn(move || crate::tally::serve_objects(listener, t));
    connect(addr, async |objects: app_objects::Client| {
        let provide = async |id: u64, may_add: bool| -> Result<counter::Client, capnp::Error> {
            let mut req = objects.provide_request();
            req.get().set_interface_id(id);
            req.get().init_descriptor().init_tags(1).get(0).set_id(id);
            req.get().init_user().set_handle("ann");
            req.get().init_permissions(1).set(0, may_add);
            req.send().promise.await?.get()?.get_cap().get_as_capability()
        };
        let c = provide(COUNTER_ID, true).await.unwrap();
        assert_eq!(remote::add(c.clone(), 5).await.unwrap(), 5);
        assert_eq!(remote::get(c).await.unwrap(), (5, "Tally".to_string()));
        let read_only = provide(COUNTER_ID, false).await.unwrap();
        let e = remote::add(read_only.clone(), 1).await.unwrap_err();
        assert!(e.extra.contains("needs the `add` permission"), "{e}");
        assert_eq!(remote::get(read_only).await.unwrap().0, 5);
        let e = provide(COUNTER_ID ^ 1, true).await.err().unwrap();
        assert!(e.extra.contains("provides only Counter"), "{e}");
    });
    assert_eq!(Tally::open(var.clone()).unwrap().state().total, 5, "written to /var");
    std::fs::remove_dir_all(var).unwrap();
}

/// The bridge's endpoint as the app sees it: `restore` of token [7, 7, 7] is a Counter on
/// `tally`; any other token fails like a revoked grant.
struct FakeGrainApi {
    tally: Arc<Tally>,
}

/// A counter whose first call fails `disconnected`, as an object does whose grain restarted
/// (the platform then makes it again on the next call).
struct RestartedCounter {
    inner: counter::Client,
    failed: std::cell::Cell<bool>,
}

impl counter::Server for RestartedCounter {
    async fn add(self: capnp::capability::Rc<Self>, params: counter::AddParams, mut results: counter::AddResults) -> Result<(), capnp::Error> {
        if !self.failed.replace(true) {
            return Err(capnp::Error::disconnected("the providing grain restarted".into()));
        }
        let total = remote::add(self.inner.clone(), params.get()?.get_amount()).await?;
        results.get().set_total(total);
        Ok(())
    }
}

impl grain_api::Server for FakeGrainApi {
    async fn restore(self: capnp::capability::Rc<Self>, params: grain_api::RestoreParams, mut results: grain_api::RestoreResults) -> Result<(), capnp::Error> {
        if params.get()?.get_token()? == [8, 8, 8] {
            let inner: counter::Client = capnp_rpc::new_client(CounterImpl { tally: self.tally.clone(), may_add: true });
            let c: counter::Client = capnp_rpc::new_client(RestartedCounter { inner, failed: std::cell::Cell::new(false) });
            results.get().init_cap().set_as_capability(c.client.hook);
            return Ok(());
        }
        if params.get()?.get_token()? != [7, 7, 7] {
            return Err(capnp::Error::failed("revoked: this saved capability is unknown, was revoked, or a requirement of its grant no longer holds; ask the user to grant it again".into()));
        }
        let c: counter::Client = capnp_rpc::new_client(CounterImpl { tally: self.tally.clone(), may_add: true });
        results.get().init_cap().set_as_capability(c.client.hook);
        Ok(())
    }
}

#[test]
fn another_counter_is_restored_and_called_over_the_local_capnp_endpoint() {
    let var = temp_var("remote");
    let tally = Arc::new(Tally::open(var.clone()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = tally.clone();
    std::thread::spawn(move || {
        let api: grain_api::Client = capnp_rpc::new_client(FakeGrainApi { tally: t });
        async_io::block_on(async {
            let listener = async_io::Async::new(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (r, w) = stream.split();
                let rpc = capnp_rpc::RpcSystem::new(Box::new(granary_schema::vat_network(r, w, Side::Server)), Some(api.clone().client));
                let _ = rpc.await; // the link keeps one connection
            }
        })
    });
    let link = Link::start(addr.to_string());
    let token = format!("gs_{}", base64url(&[7, 7, 7]));
    assert_eq!(link.call(&token, Op::Add(5)), Ok(Answer { total: 5, name: None }));
    assert_eq!(link.call(&token, Op::Get), Ok(Answer { total: 5, name: Some("Tally".into()) }));
    assert_eq!(tally.state().total, 5);
    assert_eq!(link.restores(), 1, "the restored capability is held between calls");
    let other = format!("gs_{}", base64url(&[1, 2, 3]));
    let e = link.call(&other, Op::Get).unwrap_err();
    assert!(e.starts_with("revoked: this saved capability"), "{e}");
    assert!(link.call("gs_!!", Op::Get).unwrap_err().contains("not a gs_ token"));
    // A call that fails `disconnected` is sent again on the same held capability.
    let restarted = format!("gs_{}", base64url(&[8, 8, 8]));
    let before = link.restores();
    assert_eq!(link.call(&restarted, Op::Add(2)), Ok(Answer { total: 7, name: None }));
    assert_eq!(link.restores(), before + 1, "one restore, then the same capability twice");
    std::fs::remove_dir_all(var).unwrap();
}
