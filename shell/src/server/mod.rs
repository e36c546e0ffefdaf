//! `granary serve`: the server process. Opens the store, binds the control socket and the HTTP
//! listener, and serves both on one single-threaded executor (SPEC.md, "The server").

mod app_routes;
pub use app_routes::MAX_UPLOAD_BYTES;
pub use http::human_bytes;
mod grain_routes;
mod http;
mod routes;

use crate::{accounts, control, ratelimit::LoginLimiter};
use anyhow::{bail, Context, Result};
use async_executor::LocalExecutor;
use clap::Args;
use granary_store::Db;
use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::rc::Rc;

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
    pub db: Db,
    pub base: BaseUrl,
    pub data_dir: PathBuf,
    /// Installed app images (`<data>/apps`).
    pub apps_root: PathBuf,
    pub limiter: RefCell<LoginLimiter>,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let data = args.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data).with_context(|| {
        format!("cannot create the data directory {}; pass --data-dir with a writable path", data.display())
    })?;
    let db = open_db(&data)?;
    let listener = TcpListener::bind(&args.listen).with_context(|| {
        format!("cannot listen on {}; is another server running? pass --listen HOST:PORT", args.listen)
    })?;
    let addr = listener.local_addr()?;
    let base = BaseUrl::parse(&args.base_url.unwrap_or_else(|| format!("http://localhost:{}", addr.port())))?;
    crate::grains::clean_leftovers(&data).with_context(|| format!("cannot clean {}/grains", data.display()))?;
    let apps_root = data.join("apps");
    granary_grains::apps::AppsDir::open(&apps_root)
        .with_context(|| format!("cannot prepare the apps directory {}", apps_root.display()))?;
    let server = Rc::new(Server { db, base, data_dir: data.clone(), apps_root, limiter: Default::default() });
    let control = control::bind(&data)?;

    eprintln!("Granary {} is running at {} (listening on {addr}, data in {})", env!("CARGO_PKG_VERSION"), server.base.url, data.display());
    let (_, admins) = accounts::count_users(&server.db)?;
    if admins == 0 {
        let token = accounts::new_setup_token(&server.db)?;
        eprintln!("No administrator yet. Open this link within an hour to create one:");
        eprintln!("  {}/setup/{token}", server.base.url);
        eprintln!("(`granary admin-token` prints a new link.)");
    }

    let ex = Rc::new(LocalExecutor::new());
    ex.spawn(control::serve(control, server.clone(), ex.clone())).detach();
    let listener = async_io::Async::new(listener)?;
    async_io::block_on(ex.run(accept_loop(listener, server, ex.clone())));
    Ok(())
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

async fn accept_loop(listener: async_io::Async<TcpListener>, server: Rc<Server>, ex: Rc<LocalExecutor<'static>>) {
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
        let server = server.clone();
        ex.spawn(serve_connection(stream, peer, server)).detach();
    }
}

async fn serve_connection(stream: async_io::Async<std::net::TcpStream>, peer: SocketAddr, server: Rc<Server>) {
    let service = hyper::service::service_fn(move |req| {
        let server = server.clone();
        async move { Ok::<_, std::convert::Infallible>(routes::handle(&server, peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(http::MAX_HEAD_BYTES.max(8192))
        .timer(smol_hyper::rt::SmolTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30))
        .serve_connection(smol_hyper::rt::FuturesIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!("connection from {peer}: {e}");
    }
}
