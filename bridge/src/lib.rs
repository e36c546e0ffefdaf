//! `granary-bridge`: runs **inside the sandbox, in the untrusted zone**, as the process the
//! supervisor starts for an HTTP app. It starts the app's own command, waits for it to listen
//! on 127.0.0.1, and serves the platform's `MainView` on fd 3: each `newSession` returns a
//! `WebSession` bound to that session's identity, whose calls it turns into HTTP/1.1 requests
//! to the app (a small keep-alive pool, bodies streamed both ways with flow control) and back.
//! WebSockets are carried as whole messages. The same sessions are reachable from the server
//! on the grain's direct web channel (fd 4, `direct`), which skips the supervisor hop. SPEC.md, "HTTP into a grain", is the contract.
//! It also gives the app its side of the powerbox: a local HTTP API on 127.0.0.1 (claims,
//! an HTTP proxy through granted capabilities, sending mail) over the supervisor's `GrainApi`,
//! the same `GrainApi` over Cap'n Proto on 127.0.0.1:--capnp-api-port, passes `provide` on to
//! the app's own `AppObjects`, and writes mail delivered to the grain into a Maildir (SPEC.md,
//! "Powerbox").
//!
//! May: talk to the app on 127.0.0.1 inside its own network namespace, to the supervisor on
//! fd 3, and to the server on connections accepted on fd 4; start the app as its child; write
//! diagnostics to stderr (the grain log); serve the app on 127.0.0.1:--api-port and
//! --capnp-api-port; connect to the app's --capnp-port; write delivered mail under --maildir.
//!
//! Must never: be trusted by the platform. The identity headers it sets and the client copies
//! it strips protect the *app* from spoofing by browsers; they protect nothing from the app,
//! which could replace the bridge. Every check that matters to the platform (who may open a
//! session, which permissions it has, which response headers reach the browser) happens in
//! the supervisor or the gateway. It must never be given platform credentials: the gateway
//! strips the platform's cookies and tokens before a request reaches a grain.

use std::rc::Rc;

use async_executor::LocalExecutor;

pub mod app;
pub mod app_objects;
pub mod body;
pub mod config;
pub mod direct;
pub mod lane;
mod fulfill;
pub mod headers;
pub mod hyper_io;
pub mod limits;
pub mod local_api;
pub mod local_capnp;
pub mod main_view;
pub mod maildir;
pub mod platform;
pub mod pool;
mod proxy;
pub mod serve;
pub mod session;
mod websocket;

pub use config::BridgeConfig;
pub use main_view::MainViewImpl;
pub use session::WebSessionImpl;

/// What every session of one bridge shares: the config and the connections to the app.
pub struct Bridge {
    /// The bridge's configuration.
    pub config: BridgeConfig,
    /// The app's HTTP endpoint.
    pub app: Rc<pool::AppClient>,
    /// The supervisor's `GrainApi`, session contexts and restored capabilities.
    pub platform: Rc<platform::Platform>,
    /// The app's `AppObjects` (raw interfaces it provides), reached on first use.
    pub objects: app_objects::AppObjects,
    /// Sessions reachable on the direct web channel (fd 4), by key.
    pub direct: Rc<direct::DirectSessions>,
}

impl Bridge {
    /// A bridge to the app on `config.port`; background tasks (connections, response bodies,
    /// WebSocket pumps) run on `executor`, which must be driven for as long as the bridge is used.
    pub fn new(config: BridgeConfig, executor: Rc<LocalExecutor<'static>>) -> Self {
        let objects = app_objects::AppObjects::new(config.capnp_port, executor.clone());
        let app = Rc::new(pool::AppClient::new(config.port, executor));
        Self { config, app, platform: Rc::new(platform::Platform::new()), objects, direct: Rc::default() }
    }
}
