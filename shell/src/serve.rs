//! `granary serve`: the server. For now it creates its data directory and answers every HTTP
//! request with a status page; the gateway, shell UI and grains arrive with later issues.

use anyhow::{Context, Result};
use clap::Args;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// Where the server keeps its data [default: $GRANARY_DATA_DIR, else /var/lib/granary as
    /// root, else ~/.local/share/granary].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6080")]
    listen: String,
}

fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GRANARY_DATA_DIR") {
        return d.into();
    }
    if rustix::process::geteuid().is_root() {
        return "/var/lib/granary".into();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| ".".into());
    home.join(".local/share/granary")
}

pub fn run(args: ServeArgs) -> Result<()> {
    let data = args.data_dir.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data).with_context(|| {
        format!("cannot create the data directory {}; pass --data-dir with a writable path", data.display())
    })?;
    let listener = TcpListener::bind(&args.listen).with_context(|| {
        format!("cannot listen on {}; is another server running? pass --listen HOST:PORT", args.listen)
    })?;
    eprintln!("Granary is running at http://{} (data in {})", args.listen, data.display());
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>Granary</title>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\">\
         <h1>Granary {}</h1><p>The server is running. Its data directory is <code>{}</code>.</p>\
         <p>Accounts, app install and grains are not implemented yet.</p>",
        env!("CARGO_PKG_VERSION"),
        data.display()
    );
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut buf = [0u8; 8192];
        let _ = s.read(&mut buf);
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            page.len(),
            page
        );
    }
    Ok(())
}
