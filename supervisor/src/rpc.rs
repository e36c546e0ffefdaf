//! The supervisor's Cap'n Proto objects: `Supervisor` (for the server), `GrainApi` (for the
//! app, on fd 3), the activity-counting wrapper around the app's `MainView`, wake locks and log
//! watches. State and rules live in `lifecycle.rs`.

use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use capnp::Error;
use futures::StreamExt;
use granary_schema::grain_capnp::{grain_api, main_view};
use granary_schema::supervisor_capnp::{grain_core, supervisor};
use granary_schema::util_capnp::{byte_stream, handle};

use crate::lifecycle::{AppState, Shared, Stopped};

/// At most this much per `ByteStream.write`.
const WRITE_MAX: usize = 64 << 10;

pub(crate) struct SupervisorImpl {
    shared: Rc<Shared>,
}

impl SupervisorImpl {
    pub(crate) fn new(shared: Rc<Shared>) -> SupervisorImpl {
        SupervisorImpl { shared }
    }
}

impl supervisor::Server for SupervisorImpl {
    async fn get_main_view(self: CapRc<Self>, _: supervisor::GetMainViewParams, mut results: supervisor::GetMainViewResults) -> Result<(), Error> {
        let (inner, generation) = self.shared.main_view()?;
        let view = View { inner, generation, shared: self.shared.clone() };
        results.get().set_view(capnp_rpc::new_client(view));
        Ok(())
    }

    async fn keep_alive(self: CapRc<Self>, params: supervisor::KeepAliveParams, _: supervisor::KeepAliveResults) -> Result<(), Error> {
        let core = params.get()?.get_core()?;
        *self.shared.core.borrow_mut() = Some(core);
        self.shared.touch();
        Ok(())
    }

    async fn shutdown(self: CapRc<Self>, _: supervisor::ShutdownParams, _: supervisor::ShutdownResults) -> Result<(), Error> {
        self.shared.close();
        self.shared.log.borrow_mut().event("shutdown requested by the server");
        self.shared.stop().await;
        // Exit after this reply has had time to go out.
        let shared = self.shared.clone();
        self.shared.spawner.spawn(async move {
            async_io::Timer::after(std::time::Duration::from_millis(100)).await;
            shared.finish(Stopped::Shutdown);
        });
        Ok(())
    }

    async fn watch_log(self: CapRc<Self>, params: supervisor::WatchLogParams, mut results: supervisor::WatchLogResults) -> Result<(), Error> {
        let p = params.get()?;
        let sink = p.get_sink()?;
        let (backlog, id, mut rx) = {
            let mut log = self.shared.log.borrow_mut();
            let backlog = log.backlog(p.get_backlog_bytes()).map_err(|e| Error::failed(format!("reading the grain log: {e}")))?;
            let (id, rx) = log.watch();
            (backlog, id, rx)
        };
        let log = self.shared.log.clone();
        self.shared.spawner.spawn(async move {
            let mut ok = true;
            for chunk in backlog.chunks(WRITE_MAX) {
                ok = ok && write(&sink, chunk).await;
            }
            while ok {
                match rx.next().await {
                    Some(chunk) => ok = write(&sink, &chunk).await,
                    None => break,
                }
            }
            log.borrow_mut().unwatch(id);
        });
        results.get().set_handle(capnp_rpc::new_client(LogWatch { shared: self.shared.clone(), id }));
        Ok(())
    }

    async fn storage_usage(self: CapRc<Self>, _: supervisor::StorageUsageParams, mut results: supervisor::StorageUsageResults) -> Result<(), Error> {
        let data = self.shared.cfg.sandbox.data.clone();
        let (tx, rx) = futures::channel::oneshot::channel();
        // The walk blocks: keep it off the RPC thread.
        std::thread::spawn(move || {
            let _ = tx.send(crate::disk_usage(&data));
        });
        let bytes = rx.await.map_err(|_| Error::failed("measuring storage failed".into()))?;
        let bytes = bytes.map_err(|e| Error::failed(format!("measuring the grain's storage: {e}")))?;
        results.get().set_bytes(bytes);
        Ok(())
    }

    async fn status(self: CapRc<Self>, _: supervisor::StatusParams, mut results: supervisor::StatusResults) -> Result<(), Error> {
        let mut state = results.get().init_state();
        match self.shared.state() {
            AppState::NotStarted => state.set_not_started(()),
            AppState::Starting => state.set_starting(()),
            AppState::Running(pid) => state.set_running(pid as u32),
            AppState::Exited { code, signal } => {
                let mut info = state.init_exited();
                info.set_code(code);
                info.set_signal(signal);
            }
        }
        Ok(())
    }
}

async fn write(sink: &byte_stream::Client, chunk: &[u8]) -> bool {
    let mut req = sink.write_request();
    req.get().set_data(chunk);
    req.send().await.is_ok()
}

/// A `watchLog` handle: dropping it ends the watch.
struct LogWatch {
    shared: Rc<Shared>,
    id: u64,
}

impl handle::Server for LogWatch {}

impl Drop for LogWatch {
    fn drop(&mut self) {
        self.shared.log.borrow_mut().unwatch(self.id);
    }
}

/// The app's `MainView` as the server sees it: every call counts as activity while it runs.
struct View {
    inner: main_view::Client,
    /// The app run this view belongs to.
    generation: u64,
    shared: Rc<Shared>,
}

impl View {
    /// Pass a result through, explaining a lost connection.
    async fn check<T>(&self, r: Result<T, Error>) -> Result<T, Error> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => Err(self.shared.explain(self.generation, e).await),
        }
    }
}

impl main_view::Server for View {
    async fn new_session(self: CapRc<Self>, params: main_view::NewSessionParams, mut results: main_view::NewSessionResults) -> Result<(), Error> {
        let _busy = self.shared.busy();
        let mut req = self.inner.new_session_request();
        let p = params.get()?;
        req.set(p)?;
        let context = crate::caps::ContextWrapper { inner: p.get_context()?, caps: self.shared.caps.clone() };
        req.get().set_context(capnp_rpc::new_client(context));
        let resp = self.check(req.send().promise.await).await?;
        let inner = resp.get()?.get_session()?;
        let wrapped = crate::session::SessionWrapper { inner, shared: self.shared.clone() };
        results.get().set_session(capnp_rpc::new_client(wrapped));
        // Names the same session on the grain's direct web channel (the server's data path);
        // passed on unchanged, empty when the app offers none.
        results.get().set_direct_key(resp.get()?.get_direct_key()?);
        Ok(())
    }

    async fn restore(self: CapRc<Self>, params: main_view::RestoreParams, mut results: main_view::RestoreResults) -> Result<(), Error> {
        let _busy = self.shared.busy();
        let mut req = self.inner.restore_request();
        req.set(params.get()?)?;
        let resp = self.check(req.send().promise.await).await?;
        results.set(resp.get()?)
    }

    async fn drop(self: CapRc<Self>, params: main_view::DropParams, _: main_view::DropResults) -> Result<(), Error> {
        let _busy = self.shared.busy();
        let mut req = self.inner.drop_request();
        req.set(params.get()?)?;
        self.check(req.send().promise.await).await?;
        Ok(())
    }

    async fn deliver_mail(
        self: CapRc<Self>,
        params: main_view::DeliverMailParams,
        _: main_view::DeliverMailResults,
    ) -> Result<(), Error> {
        let _busy = self.shared.busy();
        let mut req = self.inner.deliver_mail_request();
        req.set(params.get()?)?;
        self.check(req.send().promise.await).await?;
        Ok(())
    }

    async fn provide(self: CapRc<Self>, params: main_view::ProvideParams, mut results: main_view::ProvideResults) -> Result<(), Error> {
        let _busy = self.shared.busy();
        let mut req = self.inner.provide_request();
        req.set(params.get()?)?;
        let resp = self.check(req.send().promise.await).await?;
        results.set(resp.get()?)
    }
}

/// What the app gets on fd 3.
pub(crate) struct GrainApiImpl {
    shared: Rc<Shared>,
}

impl GrainApiImpl {
    pub(crate) fn new(shared: Rc<Shared>) -> GrainApiImpl {
        GrainApiImpl { shared }
    }

    fn core(&self) -> Result<grain_core::Client, Error> {
        self.shared.core.borrow().clone().ok_or_else(|| {
            Error::failed("the platform has not linked this grain to its server yet (the server does so with Supervisor.keepAlive); retry in a moment".into())
        })
    }
}

impl grain_api::Server for GrainApiImpl {
    async fn save(self: CapRc<Self>, params: grain_api::SaveParams, mut results: grain_api::SaveResults) -> Result<(), Error> {
        let p = params.get()?;
        let cap = self.shared.caps.unwrap(p.get_cap().get_as_capability()?).await;
        let mut req = self.core()?.save_request();
        req.get().init_cap().set_as_capability(cap.hook);
        req.get().set_label(p.get_label()?);
        let resp = req.send().promise.await?;
        results.get().set_token(resp.get()?.get_token()?);
        Ok(())
    }

    async fn restore(self: CapRc<Self>, params: grain_api::RestoreParams, mut results: grain_api::RestoreResults) -> Result<(), Error> {
        let mut req = self.core()?.restore_request();
        req.get().set_token(params.get()?.get_token()?);
        let resp = req.send().promise.await?;
        let cap: capnp::capability::Client = resp.get()?.get_cap().get_as_capability()?;
        results.get().init_cap().set_as_capability(self.shared.caps.wrap(cap).hook);
        Ok(())
    }

    async fn drop(self: CapRc<Self>, params: grain_api::DropParams, _: grain_api::DropResults) -> Result<(), Error> {
        let mut req = self.core()?.drop_request();
        req.get().set_token(params.get()?.get_token()?);
        req.send().promise.await?;
        Ok(())
    }

    async fn stay_awake(self: CapRc<Self>, params: grain_api::StayAwakeParams, mut results: grain_api::StayAwakeResults) -> Result<(), Error> {
        let reason = params.get()?.get_reason()?.to_string().map_err(|_| Error::failed("stayAwake: the reason must be UTF-8 text".into()))?;
        self.shared.add_wake_lock(1);
        let mut lock = WakeLock { shared: self.shared.clone(), server_handle: None };
        self.shared.log.borrow_mut().event(&format!("wake lock taken: {reason}"));
        if let Ok(core) = self.core() {
            let mut req = core.wake_lock_request();
            req.get().set_reason(reason.as_str());
            match req.send().promise.await.and_then(|r| r.get()?.get_handle()) {
                Ok(h) => lock.server_handle = Some(h),
                Err(e) => self.shared.log.borrow_mut().event(&format!("the server did not record the wake lock ({e}); it still holds the grain awake")),
            }
        }
        results.get().set_handle(capnp_rpc::new_client(lock));
        Ok(())
    }
}

/// A held `stayAwake`: no idle shutdown until every one is dropped.
struct WakeLock {
    shared: Rc<Shared>,
    /// The server's record of the lock (`GrainCore.wakeLock`), released with ours.
    server_handle: Option<handle::Client>,
}

impl handle::Server for WakeLock {}

impl Drop for WakeLock {
    fn drop(&mut self) {
        self.server_handle = None;
        self.shared.add_wake_lock(-1);
        self.shared.log.borrow_mut().event("wake lock released");
    }
}
