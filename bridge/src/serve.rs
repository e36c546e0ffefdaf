//! The bridge process: open the local API, start the app, wait for its port, serve
//! `MainView` on fd 3 and hold the supervisor's `GrainApi` from it.

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use async_executor::LocalExecutor;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::RpcSystem;
use futures::future::{select, Either};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite};
use granary_schema::grain_capnp::{grain_api, main_view};

use crate::app::App;
use crate::config::BridgeConfig;
use crate::main_view::MainViewImpl;
use crate::Bridge;

/// The descriptor the supervisor connects to the app's process.
pub const SUPERVISOR_FD: RawFd = 3;

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("fd {SUPERVISOR_FD} is not open: granary-bridge must be started by the grain supervisor")]
    NoSupervisor,
    #[error("fd {SUPERVISOR_FD} is not a socket: granary-bridge must be started by the grain supervisor")]
    NotASocket,
    #[error("fd {SUPERVISOR_FD}: {0}")]
    Fd(std::io::Error),
    #[error(transparent)]
    Launch(#[from] crate::app::LaunchError),
    #[error("cannot listen on 127.0.0.1:{port} for the app's local API: {error}; pass a free port with --api-port")]
    ApiPort { port: u16, error: std::io::Error },
    #[error("cannot listen on 127.0.0.1:{port} for the app's local Cap'n Proto endpoint: {error}; pass a free port with --capnp-api-port")]
    CapnpApiPort { port: u16, error: std::io::Error },
    #[error("waiting for the app failed: {0}")]
    Wait(std::io::Error),
}

/// Runs the bridge: takes fd 3, starts the app, waits for its port, serves `MainView` on fd 3
/// until the app exits (returns its exit code; 128 + signal if killed) or the supervisor
/// closes fd 3 (the app is sent SIGTERM and 0 is returned).
pub fn run(config: BridgeConfig) -> Result<i32, ServeError> {
    let fd3 = take_fd3()?;
    let executor = Rc::new(LocalExecutor::new());
    // A task, not the future `run` drives itself: `run` polls that future on every wake-up of
    // any task, and this one holds the supervisor connection, so each wake-up would have read
    // fd 3 for nothing. A task's handle is woken only when the task ends.
    let main = executor.spawn(serve(config, fd3, executor.clone()));
    async_io::block_on(executor.run(main))
}

fn take_fd3() -> Result<UnixStream, ServeError> {
    // SAFETY: fcntl on a descriptor number has no memory-safety preconditions.
    let flags = unsafe { libc::fcntl(SUPERVISOR_FD, libc::F_GETFD) };
    if flags < 0 {
        return Err(ServeError::NoSupervisor);
    }
    // SAFETY: fstat writes only into the zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(SUPERVISOR_FD, &mut st) } < 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(ServeError::NotASocket);
    }
    // The app must not inherit the supervisor's channel.
    // SAFETY: as above.
    if unsafe { libc::fcntl(SUPERVISOR_FD, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(ServeError::Fd(std::io::Error::last_os_error()));
    }
    // SAFETY: fd 3 is open (checked above), was handed to this process by the supervisor, and
    // nothing else in the process owns it.
    let stream = unsafe { UnixStream::from_raw_fd(SUPERVISOR_FD) };
    Ok(stream)
}

/// The bridge's end of the supervisor connection: serves `MainView` as its bootstrap,
/// bootstraps the supervisor's `GrainApi` and gives it to `bridge.platform`. Nothing moves
/// until the returned system is polled.
pub fn connect_supervisor<R, W>(bridge: &Rc<Bridge>, reader: R, writer: W) -> RpcSystem<Side>
where
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    let main_view: main_view::Client = capnp_rpc::new_client(MainViewImpl::new(bridge.clone()));
    let network = granary_schema::vat_network(reader, writer, Side::Client);
    let mut rpc = RpcSystem::new(Box::new(network), Some(main_view.client));
    let grain_api: grain_api::Client = rpc.bootstrap(Side::Server);
    bridge.platform.connect(grain_api);
    rpc
}

async fn serve(config: BridgeConfig, fd3: UnixStream, executor: Rc<LocalExecutor<'static>>) -> Result<i32, ServeError> {
    let stream = granary_schema::socket::Socket::new(fd3).map_err(ServeError::Fd)?;
    let api_port = config.api_port;
    let listener = crate::local_api::bind(api_port).map_err(|error| ServeError::ApiPort { port: api_port, error })?;
    let capnp_api_port = config.capnp_api_port;
    let capnp_listener = crate::local_capnp::bind(capnp_api_port).map_err(|error| ServeError::CapnpApiPort { port: capnp_api_port, error })?;
    let bridge = Rc::new(Bridge::new(config, executor.clone()));
    let (reader, writer) = stream.split();
    // Created now so the local API can queue GrainApi calls; fd 3 is read only once the app
    // listens (below), so the supervisor never reaches a MainView whose app is not up.
    let rpc = connect_supervisor(&bridge, reader, writer);
    match crate::direct::take_listener() {
        Ok(Some(listener)) => {
            bridge.direct.enable();
            executor.spawn(crate::direct::serve(listener, bridge.clone())).detach();
        }
        Ok(None) => {}
        Err(e) => eprintln!("granary-bridge: {e}"),
    }
    executor.spawn(crate::local_api::serve(listener, bridge.clone())).detach();
    executor.spawn(crate::local_capnp::serve(capnp_listener, bridge.platform.clone(), executor.clone())).detach();
    eprintln!("granary-bridge: the local API listens on 127.0.0.1:{api_port}, its Cap'n Proto endpoint on 127.0.0.1:{capnp_api_port}");
    let mut app = App::spawn(&bridge.config)?;
    if let Err(e) = app.wait_for_port(bridge.config.port, bridge.config.startup_timeout).await {
        app.terminate();
        return Err(e.into());
    }
    eprintln!("granary-bridge: the app accepts connections on 127.0.0.1:{}", bridge.config.port);
    match select(rpc, &mut app.exited).await {
        Either::Left((result, _)) => {
            if let Err(e) = result {
                eprintln!("granary-bridge: connection to the supervisor failed: {e}");
            }
            eprintln!("granary-bridge: the supervisor closed fd {SUPERVISOR_FD}; stopping the app");
            app.terminate();
            Ok(0)
        }
        Either::Right((status, _)) => {
            let status = status.map_err(|_| ServeError::Wait(std::io::ErrorKind::BrokenPipe.into()))?.map_err(ServeError::Wait)?;
            eprintln!("granary-bridge: the app exited ({status})");
            use std::os::unix::process::ExitStatusExt;
            Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
        }
    }
}
