//! `granary serve`: the server process. Opens the store, binds the control socket and the HTTP
//! listener, and serves both on one single-threaded executor (SPEC.md, "The server").

mod api;
mod app_routes;
pub mod coarse_timer;
pub use app_routes::MAX_UPLOAD_BYTES;
pub use http::human_bytes;
mod email_routes;
mod grain_routes;
pub mod http;
mod log_route;
mod powerbox_routes;
mod routes;
mod session_wiring;
pub use session_wiring::stable_user_id;
mod share_routes;

use crate::{accounts, control, ratelimit::LoginLimiter};
use anyhow::{bail, Context, Result};
use async_executor::LocalExecutor;
use clap::Args;
use granary_store::Db;
use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Where the server keeps its data [default: $GRANARY_DATA_DIR, else /var/lib/granary as
    /// root, else ~/.local/share/granary].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6080")]
    listen: String,
    /// The URL people use to reach the server [default: http://localhost:<port>].
    #[arg(long)]
    base_url: Option<String>,
    /// Host pattern of grain session origins [default: *.localhost:<port> for a localhost
    /// base URL, else *.<base host>].
    #[arg(long)]
    wildcard_host: Option<String>,
    /// The static bridge binary run in every grain [default: $GRANARY_BRIDGE, else
    /// granary-bridge next to this binary or in the cargo target's static build].
    #[arg(long, value_name = "FILE")]
    bridge: Option<PathBuf>,
    /// Seconds without use after which a grain's app is stopped.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    idle: u64,
    /// Directory of sample app packages (*.gpk) installed on first run [default:
    /// $GRANARY_SAMPLE_APPS, else sample-apps in the cargo target directory, made by
    /// scripts/build-sample-apps.sh].
    #[arg(long, value_name = "DIR")]
    sample_apps: Option<PathBuf>,
    /// How long a login session lasts, in seconds (default 30 days).
    #[arg(long, value_name = "SECS", default_value_t = 30 * 24 * 3600, value_parser = clap::value_parser!(u64).range(1..))]
    session_lifetime: u64,
    /// Offer click-to-sign-in test users on the sign-in page (development only; every page
    /// then shows a warning banner).
    #[arg(long)]
    dev_accounts: bool,
    /// Default memory limit of every grain, in MiB (an administrator can set another per app).
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    grain_memory: u64,
    /// Default limit of processes and threads in every grain.
    #[arg(long, value_name = "N", default_value_t = 256)]
    grain_tasks: u64,
    /// Resolve HOST to IP for the powerbox's HTTP driver instead of asking DNS (repeatable;
    /// for tests and split-horizon setups). Private addresses still need the allowlist.
    #[arg(long, value_name = "HOST=IP")]
    resolve: Vec<String>,
    /// Accept mail for grains (`<grain id>@<mail domain>`) by SMTP on this address, e.g.
    /// 0.0.0.0:25 [default: off].
    #[arg(long, value_name = "ADDR")]
    smtp_listen: Option<String>,
    /// Seconds a client has to send a request's head, on a new or a kept-alive connection,
    /// before the connection is closed (checked once a second).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
}

/// The HTTP driver's resolver overrides from `--resolve HOST=IP`.
fn net_policy(resolve: &[String]) -> Result<granary_powerbox::drivers::ssrf::NetPolicy> {
    let mut policy = granary_powerbox::drivers::ssrf::NetPolicy::default();
    for r in resolve {
        let Some((host, ip)) = r.split_once('=') else { bail!("--resolve `{r}` must be HOST=IP, e.g. api.test=127.0.0.1") };
        let ip: std::net::IpAddr = ip.parse().with_context(|| format!("--resolve `{r}`: `{ip}` is not an IP address"))?;
        policy.resolve_override.entry(host.to_ascii_lowercase()).or_default().push(ip);
    }
    Ok(policy)
}

impl ServeArgs {
    /// Which settings the command line fixed (they win over stored settings).
    fn overrides(&self) -> crate::settings::Overrides {
        crate::settings::Overrides {
            dev_accounts: self.dev_accounts,
            limits: self.grain_memory != 512 || self.grain_tasks != 256,
        }
    }
}

pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GRANARY_DATA_DIR") {
        return d.into();
    }
    if rustix::process::geteuid().is_root() {
        return "/var/lib/granary".into();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| ".".into());
    home.join(".local/share/granary")
}

/// The server's public address.
pub struct BaseUrl {
    /// Scheme, host and port, without a trailing slash: `http://localhost:6080`.
    pub url: String,
    /// The `Host` header value browsers send for it: `localhost:6080`.
    pub host: String,
    pub secure: bool,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl> {
        let url = url.trim_end_matches('/');
        let (secure, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            bail!("--base-url `{url}` must start with http:// or https://, e.g. http://localhost:6080");
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            bail!("--base-url `{url}` must be a scheme, host and optional port only, e.g. https://granary.example.org");
        }
        Ok(BaseUrl { url: url.to_owned(), host: rest.to_ascii_lowercase(), secure })
    }
}

/// Everything a request handler may use.
pub struct Server {
    pub ex: Rc<LocalExecutor<'static>>,
    pub gateway: crate::gateway::Gateway,
    pub runner: crate::runner::Runner,
    pub db: Rc<Db>,
    pub base: BaseUrl,
    pub data_dir: PathBuf,
    /// Installed app images (`<data>/apps`).
    pub apps_root: PathBuf,
    pub limiter: RefCell<LoginLimiter>,
    /// Grants, claims, live membranes and the drivers' network policy.
    pub powerbox: crate::powerbox_host::PowerboxHost,
    /// Grain storage sizes for the lists, measured at most every 30 s per grain.
    pub storage: crate::storage_meter::StorageMeter,
    /// A weak handle on this server, set once it is in its `Rc`.
    pub me: std::cell::OnceCell<std::rc::Weak<Server>>,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let overrides = args.overrides();
    let data = args.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data).with_context(|| {
        format!("cannot create the data directory {}; pass --data-dir with a writable path", data.display())
    })?;
    let db = open_db(&data)?;
    let listener = TcpListener::bind(&args.listen).with_context(|| {
        format!("cannot listen on {}; is another server running? pass --listen HOST:PORT", args.listen)
    })?;
    let addr = listener.local_addr()?;
    // `granary.localhost`, not `localhost`: browsers resolve every `*.localhost` name to
    // loopback, and only a name with a registrable part makes the grain origins
    // `*.granary.localhost` same-site with the shell, so their framed cookies are not
    // third-party (Chromium refuses third-party cookies).
    let (stored_base, stored_wildcard) = crate::settings::stored_addresses(&db)?;
    let base = BaseUrl::parse(&args.base_url.clone().or(stored_base).unwrap_or_else(|| format!("http://granary.localhost:{}", addr.port())))?;
    make_traversable(&data)?;
    crate::grains::clean_leftovers(&data).with_context(|| format!("cannot clean {}/grains", data.display()))?;
    let apps_root = data.join("apps");
    granary_grains::apps::AppsDir::open(&apps_root)
        .with_context(|| format!("cannot prepare the apps directory {}", apps_root.display()))?;
    let wildcard = match args.wildcard_host.clone().or(stored_wildcard) {
        Some(w) => w,
        None => default_wildcard(&base),
    };
    let wildcard = crate::gateway::WildcardHost::parse(&wildcard, base.secure)?;
    let platform_dir = data.join("platform");
    let bridge_note = match install_bridge(args.bridge, &platform_dir) {
        Ok(path) => format!("bridge {}", path.display()),
        Err(e) => {
            eprintln!("warning: {e:#}");
            "no bridge: grains cannot be opened".into()
        }
    };
    accounts::SESSION_SECONDS.store(args.session_lifetime, std::sync::atomic::Ordering::Relaxed);
    if args.dev_accounts {
        crate::ui::DEV_ACCOUNTS.store(true, std::sync::atomic::Ordering::Relaxed);
        eprintln!("warning: --dev-accounts is on: anyone can sign in as a test user. Never use this for real data.");
    }
    let mut runner = crate::runner::Runner::new(&data, platform_dir);
    runner.idle_seconds = args.idle;
    runner.default_limits.set(crate::apps::GrainLimits { memory_mib: args.grain_memory, tasks: args.grain_tasks });
    let ex = Rc::new(LocalExecutor::new());
    let db = Rc::new(db);
    let server = Rc::new(Server {
        ex: ex.clone(),
        gateway: crate::gateway::Gateway::new(wildcard),
        runner,
        db: db.clone(),
        base,
        data_dir: data.clone(),
        apps_root,
        limiter: Default::default(),
        powerbox: crate::powerbox_host::PowerboxHost::new(db.clone(), net_policy(&args.resolve)?),
        storage: Default::default(),
        me: Default::default(),
    });
    let _ = server.me.set(Rc::downgrade(&server));
    crate::powerbox_host::start_recheck(&server);
    server.powerbox.sync_allowlist(&crate::settings::load(&server.db)?.http_allowlist);
    if let Some(addr) = &args.smtp_listen {
        crate::powerbox_host::start_smtp(&server, addr)?;
    }
    let control = control::bind(&data)?;
    install_samples(&server, args.sample_apps)?;
    crate::settings::apply_stored(&server, &overrides)?;
    eprintln!("Grain sessions at {}://*{} ({bridge_note})", server.gateway.wildcard.scheme, server.gateway.wildcard.suffix);

    eprintln!("Granary {} is running at {} (listening on {addr}, data in {})", env!("CARGO_PKG_VERSION"), server.base.url, data.display());
    let (_, admins) = accounts::count_users(&server.db)?;
    if admins == 0 {
        let token = accounts::new_setup_token(&server.db)?;
        eprintln!("No administrator yet. Open this link within an hour to create one:");
        eprintln!("  {}/setup/{token}", server.base.url);
        eprintln!("(`granary admin-token` prints a new link.)");
    }

    ex.spawn(control::serve(control, server.clone(), ex.clone())).detach();
    let listener = async_io::Async::new(listener)?;
    // A task, not the future `run` drives itself: `run` polls that future on every wake-up of
    // any task, which cost an `accept4` and an `epoll_ctl` per request. A task's handle is
    // woken only when the task ends, which the accept loop never does.
    let timer = coarse_timer::CoarseTimer::new();
    ex.spawn(timer.clone().sweep(coarse_timer::TICK)).detach();
    let connections = Connections { timer, header_timeout: Duration::from_secs(args.header_timeout) };
    let main = ex.spawn(accept_loop(listener, server, ex.clone(), connections));
    async_io::block_on(ex.run(main));
    Ok(())
}

/// Server settings (key → JSON value).
pub const SETTINGS: granary_store::Table<String, String> = granary_store::Table::new("settings");

/// On first run, installs the sample apps so a newcomer can create a grain at once.
fn install_samples(server: &Server, dir: Option<PathBuf>) -> Result<()> {
    if server.db.get(&SETTINGS, "samples_installed")?.is_some() {
        return Ok(());
    }
    let dir = match dir.or_else(|| std::env::var_os("GRANARY_SAMPLE_APPS").map(PathBuf::from)) {
        Some(d) => d,
        None => {
            let exe = std::env::current_exe()?;
            exe.parent().and_then(Path::parent).map(|t| t.join("sample-apps")).unwrap_or_default()
        }
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("No sample apps at {} (scripts/build-sample-apps.sh makes them); none installed.", dir.display());
        return Ok(());
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "gpk")).collect();
    paths.sort();
    for p in paths {
        match crate::apps::verify_and_unpack(&server.apps_root, &p, &granary_grains::package::Limits::default()) {
            Ok(u) => {
                let title = u.manifest.app_title.clone();
                crate::apps::record(&server.db, u, "granary").map_err(|e| anyhow::anyhow!("{e}"))?;
                eprintln!("Installed the sample app {title} from {}", p.display());
            }
            Err(e) => eprintln!("warning: sample app {} not installed: {e}", p.display()),
        }
    }
    server.db.insert(&SETTINGS, "samples_installed", &"true".to_owned())?;
    Ok(())
}

/// The grains' sandboxed uid must reach `<data>/apps` and `<data>/grains` through the data
/// directory: give it search (x) permission for others if it lacks it (never read).
fn make_traversable(data: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data)?.permissions().mode();
    if mode & 0o001 == 0 {
        std::fs::set_permissions(data, std::fs::Permissions::from_mode((mode & 0o7777) | 0o011))
            .with_context(|| format!("{} must be searchable by the grains' uid (chmod o+x it)", data.display()))?;
        eprintln!("Made {} searchable by others (o+x) so grains can reach their files; its contents stay private.", data.display());
    }
    Ok(())
}

/// `*.granary.localhost:PORT` for a loopback base URL (browsers resolve `*.localhost` to
/// loopback; see above for why not `*.localhost`), else `*.` + the base host.
fn default_wildcard(base: &BaseUrl) -> String {
    let (host, port) = match base.host.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p)),
        _ => (base.host.as_str(), None),
    };
    let host = if host == "localhost" || host == "127.0.0.1" || host == "[::1]" { "granary.localhost" } else { host };
    match port {
        Some(p) => format!("*.{host}:{p}"),
        None => format!("*.{host}"),
    }
}

/// Copies the static bridge into `<data>/platform/bridge` (bound read-only at `/.granary` in
/// every grain), after checking it is a statically linked ELF program.
fn install_bridge(flag: Option<PathBuf>, platform_dir: &Path) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match flag.or_else(|| std::env::var_os("GRANARY_BRIDGE").map(PathBuf::from)) {
        Some(p) => vec![p],
        None => {
            let exe = std::env::current_exe()?;
            let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
            let profile = dir.file_name().map(|p| p.to_owned()).unwrap_or_default();
            let target = dir.parent().map(Path::to_path_buf).unwrap_or_default();
            vec![dir.join("granary-bridge"), target.join("x86_64-unknown-linux-gnu").join(profile).join("granary-bridge")]
        }
    };
    let Some(src) = candidates.iter().find(|p| p.is_file()) else {
        bail!(
            "the static bridge was not found (looked at {}); build it with `scripts/build-bridge.sh` or pass --bridge FILE",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    };
    let bytes = std::fs::read(src).with_context(|| format!("reading the bridge {}", src.display()))?;
    let info = granary_grains::elf::parse(&bytes).map_err(|e| anyhow::anyhow!("the bridge {} is not an ELF program: {e}", src.display()))?;
    if info.interpreter.is_some() || !info.needed.is_empty() {
        bail!("the bridge {} is dynamically linked; grains have no libraries for it: build it with `scripts/build-bridge.sh`", src.display());
    }
    std::fs::create_dir_all(platform_dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(platform_dir, std::fs::Permissions::from_mode(0o755))?;
    let tmp = platform_dir.join(".bridge.new");
    std::fs::write(&tmp, &bytes)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))?;
    std::fs::rename(&tmp, platform_dir.join("bridge"))?;
    Ok(src.clone())
}

fn open_db(data: &Path) -> Result<Db> {
    let path = data.join("db");
    Db::open(&path, &[]).with_context(|| {
        format!(
            "cannot open the database {}; if another `granary serve` uses this data directory, stop it or pass another --data-dir",
            path.display()
        )
    })
}

/// What every HTTP connection of the server shares.
#[derive(Clone)]
struct Connections {
    /// hyper's timer, for the header deadline.
    timer: coarse_timer::CoarseTimer,
    /// `--header-timeout`.
    header_timeout: Duration,
}

async fn accept_loop(listener: async_io::Async<TcpListener>, server: Rc<Server>, ex: Rc<LocalExecutor<'static>>, connections: Connections) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("accept failed: {e}");
                async_io::Timer::after(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Streamed responses go out as a head and then chunks: with Nagle's algorithm each later
        // small write waited for the browser's delayed ACK, 40 ms at a time.
        let _ = stream.get_ref().set_nodelay(true);
        let server = server.clone();
        ex.spawn(serve_connection(stream, peer, server, connections.clone())).detach();
    }
}

use granary_schema::socket::LingeringClose;

async fn serve_connection(stream: async_io::Async<std::net::TcpStream>, peer: SocketAddr, server: Rc<Server>, connections: Connections) {
    let socket = granary_schema::socket::Socket::from(stream);
    let ack = socket.ack_handle();
    let closing = socket.lingering_close();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        // A body follows the head: a client that sends them apart with Nagle's algorithm on
        // (Python's http.client always does) holds the body until the head is acknowledged,
        // which the kernel would delay by 40 ms on a kept-alive connection.
        let has_body = !hyper::body::Body::is_end_stream(req.body());
        if has_body {
            ack.ack_now();
        }
        let server = server.clone();
        async move {
            let mut resp = routes::handle(&server, peer, req).await;
            granary_bridge::body::end_connection_after_refusal(has_body, &mut resp);
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(http::MAX_HEAD_BYTES.max(8192))
        .timer(connections.timer)
        .header_read_timeout(connections.header_timeout)
        .serve_connection(granary_bridge::hyper_io::HyperIo(socket), service)
        // Without this hyper never hands a 101's connection to `hyper::upgrade::on`: grain
        // WebSockets (gateway::websocket) would be reset right after the handshake.
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!("connection from {peer}: {e}");
    }
    // An answer given without reading the request's body (a refused upload, hyper's 431) must
    // reach a client that is still sending: close gently (SPEC.md, "TCP").
    closing.close(LingeringClose::QUIET, LingeringClose::LIMIT).await;
}
