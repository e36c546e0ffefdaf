//! `MainView.provide` for apps that provide raw Cap'n Proto interfaces (SPEC.md, "Raw
//! interfaces"): the call is passed on to the app's own `AppObjects`, the bootstrap it serves
//! with two-party Cap'n Proto RPC on 127.0.0.1:`--capnp-port` (the manifest's `[capnp] port`).
//! One connection is kept and made again when it broke.

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::rc::Rc;

use async_executor::LocalExecutor;
use async_io::Async;
use capnp::Error;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::RpcSystem;
use futures::AsyncReadExt;
use granary_schema::grain_capnp::{app_objects, main_view};

use crate::pool::AppStream;

/// The app's `AppObjects`, reached on first use.
pub struct AppObjects {
    /// 0 when the app provides no raw interfaces.
    port: u16,
    executor: Rc<LocalExecutor<'static>>,
    /// The bootstrap of the live connection, and whether that connection still runs.
    connection: RefCell<Option<(app_objects::Client, Rc<Cell<bool>>)>>,
}

impl AppObjects {
    /// The app's objects on 127.0.0.1:`port` (0: none); connections run on `executor`.
    pub fn new(port: u16, executor: Rc<LocalExecutor<'static>>) -> Self {
        Self { port, executor, connection: RefCell::new(None) }
    }

    /// The app's `AppObjects`: the kept connection's, or a new connection's.
    async fn client(&self) -> Result<app_objects::Client, Error> {
        if self.port == 0 {
            return Err(Error::failed(
                "this app provides no Cap'n Proto interfaces: its manifest needs `[capnp] port` and a \
                 `[[powerbox.provides]] interface` entry"
                    .into(),
            ));
        }
        if let Some((client, alive)) = self.connection.borrow().as_ref() {
            if alive.get() {
                return Ok(client.clone());
            }
        }
        let port = self.port;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = Async::<TcpStream>::connect(addr).await.map_err(|e| {
            Error::failed(format!("the app does not serve Cap'n Proto on 127.0.0.1:{port} (manifest [capnp] port): {e}"))
        })?;
        // Quick ACKs and no delay (`AppStream`): an app that leaves Nagle's algorithm on
        // answers a call with more than one message, and each later one waited 40 ms.
        let (reader, writer) = AppStream::with_quick_acks(stream).split();
        let network = granary_schema::vat_network(reader, writer, Side::Client);
        let mut rpc = RpcSystem::new(Box::new(network), None);
        let client: app_objects::Client = rpc.bootstrap(Side::Server);
        let alive = Rc::new(Cell::new(true));
        let flag = alive.clone();
        self.executor
            .spawn(async move {
                if let Err(e) = rpc.await {
                    eprintln!("granary-bridge: the app's Cap'n Proto connection on 127.0.0.1:{port} ended: {e}");
                }
                flag.set(false);
            })
            .detach();
        *self.connection.borrow_mut() = Some((client.clone(), alive));
        Ok(client)
    }

    /// Forgets the kept connection (it failed).
    fn forget(&self) {
        *self.connection.borrow_mut() = None;
    }

    /// Passes `MainView.provide` on to the app's `AppObjects.provide`. A call that finds the
    /// kept connection broken is sent once more on a new one.
    pub async fn provide(&self, params: main_view::ProvideParams, mut results: main_view::ProvideResults) -> Result<(), Error> {
        let p = params.get()?;
        let mut retried = false;
        loop {
            let client = self.client().await?;
            let mut req = client.provide_request();
            {
                let mut r = req.get();
                r.set_interface_id(p.get_interface_id());
                r.set_descriptor(p.get_descriptor()?)?;
                r.set_user(p.get_user()?)?;
                r.set_permissions(p.get_permissions()?)?;
            }
            match req.send().promise.await {
                Ok(reply) => {
                    let cap: capnp::capability::Client = reply.get()?.get_cap().get_as_capability()?;
                    results.get().init_cap().set_as_capability(cap.hook);
                    return Ok(());
                }
                Err(e) if e.kind == capnp::ErrorKind::Disconnected && !retried => {
                    self.forget();
                    retried = true;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
