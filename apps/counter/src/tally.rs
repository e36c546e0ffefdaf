//! The grain's tally, kept in `/var/counter.json` (written atomically after every change), and
//! the Cap'n Proto side that provides it: `AppObjects` on 127.0.0.1:<capnp port>, whose
//! `provide(Counter's id, …)` returns a `Counter` on this tally.

use granary_app_kit::json::Json;
use granary_app_kit::store;
use granary_schema::grain_capnp::app_objects;
use granary_schema::sample_capnp::counter;
use std::path::PathBuf;
use std::sync::Mutex;

/// Counter's type id: what `[[powerbox.provides]] interface` names and requests ask for.
pub const COUNTER_ID: u64 = <counter::Client as capnp::traits::HasTypeId>::TYPE_ID;

/// The saved connection to another grain's counter.
#[derive(Clone, Debug, PartialEq)]
pub struct Remote {
    /// The `gs_…` token `POST /claim` returned.
    pub token: String,
    /// When it was connected (RFC 3339).
    pub connected: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub total: i64,
    pub name: String,
    pub remote: Option<Remote>,
}

impl State {
    fn to_json(&self) -> Json {
        let remote = match &self.remote {
            Some(r) => Json::obj([("token", Json::from(r.token.as_str())), ("connected", Json::from(r.connected.as_str()))]),
            None => Json::Null,
        };
        Json::obj([("total", Json::Num(self.total as f64)), ("name", Json::from(self.name.as_str())), ("remote", remote)])
    }

    fn from_json(j: &Json) -> Result<State, String> {
        let total = match j.get("total") {
            Some(Json::Num(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => *n as i64,
            _ => return Err("counter.json has no integer \"total\"; fix or delete it".into()),
        };
        let name = j.str_field("name").unwrap_or("Tally").to_owned();
        let remote = match j.get("remote") {
            Some(r @ Json::Obj(_)) => Some(Remote {
                token: r.str_field("token").unwrap_or_default().to_owned(),
                connected: r.str_field("connected").unwrap_or_default().to_owned(),
            }),
            _ => None,
        };
        Ok(State { total, name, remote })
    }
}

/// The tally and where it is kept.
pub struct Tally {
    path: PathBuf,
    state: Mutex<State>,
}

impl Tally {
    /// The tally in `var/counter.json` (a new one, at 0, if the file does not exist).
    pub fn open(var: PathBuf) -> Result<Tally, String> {
        let path = var.join("counter.json");
        let state = match store::load(&path)? {
            Some(j) => State::from_json(&j)?,
            None => State { total: 0, name: "Tally".into(), remote: None },
        };
        Ok(Tally { path, state: Mutex::new(state) })
    }

    pub fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes the state with `f` and writes it; on a failed write the change is undone.
    pub fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, String> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let before = s.clone();
        let out = f(&mut s);
        if let Err(e) = store::save(&self.path, &s.to_json()) {
            *s = before;
            return Err(e);
        }
        Ok(out)
    }

    /// Adds `amount`; the new total.
    pub fn add(&self, amount: i64) -> Result<i64, String> {
        self.update(|s| {
            s.total = s.total.saturating_add(amount);
            s.total
        })
    }
}

/// This grain's tally as a `Counter`, for one grant: `may_add` is the chooser's `add`
/// permission (the platform requires they keep it for as long as the grant lives).
pub struct CounterImpl {
    pub tally: std::sync::Arc<Tally>,
    pub may_add: bool,
}

impl counter::Server for CounterImpl {
    async fn add(self: capnp::capability::Rc<Self>, params: counter::AddParams, mut results: counter::AddResults) -> Result<(), capnp::Error> {
        if !self.may_add {
            return Err(capnp::Error::failed("adding to this counter needs the `add` permission on its grain".into()));
        }
        let total = self.tally.add(params.get()?.get_amount()).map_err(capnp::Error::failed)?;
        results.get().set_total(total);
        Ok(())
    }

    async fn get(self: capnp::capability::Rc<Self>, _: counter::GetParams, mut results: counter::GetResults) -> Result<(), capnp::Error> {
        let s = self.tally.state();
        results.get().set_total(s.total);
        results.get().set_name(s.name.as_str());
        Ok(())
    }
}

/// The bootstrap the bridge reaches on the `[capnp] port`.
pub struct AppObjectsImpl {
    pub tally: std::sync::Arc<Tally>,
}

impl app_objects::Server for AppObjectsImpl {
    async fn provide(self: capnp::capability::Rc<Self>, params: app_objects::ProvideParams, mut results: app_objects::ProvideResults) -> Result<(), capnp::Error> {
        let p = params.get()?;
        if p.get_interface_id() != COUNTER_ID {
            return Err(capnp::Error::failed(format!(
                "this app provides only Counter ({COUNTER_ID:#018x}), not {:#018x}",
                p.get_interface_id()
            )));
        }
        let may_add = p.get_permissions()?.iter().next().unwrap_or(false);
        let who = p.get_user()?.get_handle()?.to_string().unwrap_or_default();
        eprintln!("counter: provided the tally to a grant chosen by {who:?} (add: {may_add})");
        let c: counter::Client = capnp_rpc::new_client(CounterImpl { tally: self.tally.clone(), may_add });
        results.get().init_cap().set_as_capability(c.client.hook);
        Ok(())
    }
}

/// Serves `AppObjects` on `listener` forever (on the calling thread).
pub fn serve_objects(listener: std::net::TcpListener, tally: std::sync::Arc<Tally>) {
    use capnp_rpc::rpc_twoparty_capnp::Side;
    use futures::AsyncReadExt;
    let ex = std::rc::Rc::new(async_executor::LocalExecutor::new());
    let objects: app_objects::Client = capnp_rpc::new_client(AppObjectsImpl { tally });
    let ex2 = ex.clone();
    async_io::block_on(ex.run(async move {
        let listener = async_io::Async::new(listener).expect("a listening socket can be made non-blocking");
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (r, w) = stream.split();
            let network = granary_schema::vat_network(r, w, Side::Server);
            let rpc = capnp_rpc::RpcSystem::new(Box::new(network), Some(objects.clone().client));
            ex2.spawn(async move {
                let _ = rpc.await;
            })
            .detach();
        }
    }));
}
