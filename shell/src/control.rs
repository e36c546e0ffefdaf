//! The control socket: `<data dir>/control.sock` (mode 0600), serving `control.capnp`'s
//! `Control` to local command-line tools, and the client those tools use.

use crate::accounts;
use crate::server::Server;
use anyhow::{Context, Result};
use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use futures::AsyncReadExt;
use granary_schema::control_capnp::control;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Binds the control socket, replacing a stale one (the caller holds the database lock, so no
/// other server uses this data directory).
pub fn bind(data_dir: &Path) -> Result<async_io::Async<UnixListener>> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("cannot create the control socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(async_io::Async::new(listener)?)
}

/// Accepts control connections forever, each served on the local executor.
pub async fn serve(listener: async_io::Async<UnixListener>, server: Rc<Server>, ex: Rc<async_executor::LocalExecutor<'static>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (reader, writer) = stream.split();
        let network = twoparty::VatNetwork::new(reader, writer, Side::Server, Default::default());
        let client: control::Client = capnp_rpc::new_client(ControlImpl { server: server.clone() });
        let rpc = RpcSystem::new(Box::new(network), Some(client.client));
        ex.spawn(async move {
            if let Err(e) = rpc.await {
                tracing::debug!("control connection ended: {e}");
            }
        })
        .detach();
    }
}

struct ControlImpl {
    server: Rc<Server>,
}

fn failed(e: impl std::fmt::Display) -> capnp::Error {
    capnp::Error::failed(e.to_string())
}

impl control::Server for ControlImpl {
    fn new_admin_token(
        self: capnp::capability::Rc<Self>,
        _: control::NewAdminTokenParams,
        mut results: control::NewAdminTokenResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        let r = (|| {
            let token = accounts::new_setup_token(&self.server.db).map_err(failed)?;
            let mut out = results.get();
            out.set_url(format!("{}/setup/{token}", self.server.base.url));
            out.set_valid_seconds(accounts::SETUP_TOKEN_SECONDS as u32);
            Ok(())
        })();
        std::future::ready(r)
    }

    fn status(
        self: capnp::capability::Rc<Self>,
        _: control::StatusParams,
        mut results: control::StatusResults,
    ) -> impl std::future::Future<Output = Result<(), capnp::Error>> + 'static {
        let r = (|| {
            let (users, admins) = accounts::count_users(&self.server.db).map_err(failed)?;
            let mut out = results.get();
            out.set_version(env!("CARGO_PKG_VERSION"));
            out.set_users(users);
            out.set_admins(admins);
            out.set_base_url(&self.server.base.url);
            Ok(())
        })();
        std::future::ready(r)
    }
}

/// Connects to the running server's control socket and runs `f` with the `Control` client.
pub fn with_control<T: 'static>(
    data_dir: &Path,
    f: impl AsyncFnOnce(control::Client) -> Result<T>,
) -> Result<T> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "no Granary server is running with data directory {} (cannot connect to {}); start it with `granary serve`, or pass the --data-dir it uses",
            data_dir.display(),
            path.display()
        )
    })?;
    let (reader, writer) = async_io::Async::new(stream)?.split();
    let network = twoparty::VatNetwork::new(reader, writer, Side::Client, Default::default());
    let mut rpc = RpcSystem::new(Box::new(network), None);
    let client: control::Client = rpc.bootstrap(Side::Server);
    let ex = async_executor::LocalExecutor::new();
    ex.spawn(rpc).detach();
    async_io::block_on(ex.run(f(client)))
}
