//! The app's local Cap'n Proto endpoint (SPEC.md, "Raw interfaces"): two-party RPC on
//! `127.0.0.1:--capnp-api-port` (default 7871) inside the grain whose bootstrap is the
//! supervisor's `GrainApi`, so an app that speaks Cap'n Proto can `restore` the `gs_` tokens it
//! got from `POST /claim` and call the capabilities directly, `save` them again and `drop`
//! them. Like the local HTTP API it grants nothing by itself: every call is the supervisor's
//! `GrainApi`, checked by the platform.

use std::net::TcpListener;
use std::rc::Rc;

use async_executor::LocalExecutor;
use async_io::Async;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::RpcSystem;
use futures::AsyncReadExt;

use crate::platform::Platform;

/// The local Cap'n Proto endpoint's port unless `--capnp-api-port` says otherwise.
pub const DEFAULT_CAPNP_API_PORT: u16 = 7871;

pub use crate::local_api::bind;

/// Serves every connection to `listener` with the platform's `GrainApi` as bootstrap; a
/// connection made before the supervisor's `GrainApi` arrived is closed at once.
pub async fn serve(listener: Async<TcpListener>, platform: Rc<Platform>, executor: Rc<LocalExecutor<'static>>) {
    loop {
        let stream = crate::local_api::accept(&listener, "the local Cap'n Proto endpoint").await;
        let Ok(grain_api) = platform.grain_api().cloned() else {
            eprintln!("granary-bridge: a Cap'n Proto connection came before the supervisor's GrainApi; closed");
            continue;
        };
        let (reader, writer) = stream.split();
        let network = granary_schema::vat_network(reader, writer, Side::Server);
        let rpc = RpcSystem::new(Box::new(network), Some(grain_api.client));
        executor
            .spawn(async move {
                let _ = rpc.await;
            })
            .detach();
    }
}
