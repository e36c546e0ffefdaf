//! Helpers for the powerbox end-to-end tests: an origin server on loopback that records what
//! reaches it, an aiosmtpd relay, and the powerbox test app packed and installed.
#![allow(dead_code)]

use crate::server::Client;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request the origin server received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub host: String,
    pub body_bytes: usize,
}

/// A small HTTP/1.1 origin on 127.0.0.1 that records what reaches it.
pub struct OriginServer {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<Mutex<usize>>,
}

impl OriginServer {
    pub fn start() -> OriginServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (s, c) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                *c.lock().unwrap() += 1;
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &s);
                });
            }
        });
        OriginServer { port, seen, connections }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_one(stream: TcpStream, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    let mut r = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
    let (mut host, mut length, mut chunked) = (String::new(), 0usize, false);
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        match k.to_ascii_lowercase().as_str() {
            "host" => host = v.trim().to_owned(),
            "content-length" => length = v.trim().parse().unwrap_or(0),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let mut body_bytes = 0;
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            body_bytes += n;
            if n == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0; length];
        r.read_exact(&mut body)?;
        body_bytes = length;
    }
    let answer = json!({ "origin": "test", "path": path, "body_bytes": body_bytes }).to_string();
    seen.lock().unwrap().push(Seen { method, path, host, body_bytes });
    let mut w = stream;
    write!(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len())?;
    w.flush()
}

/// Packs `powerbox_app.py` with Debian's python3; it provides the API "echo-api" below
/// `/api/` to holders of `edit`. Installs it; returns the package id.
pub fn install_app(c: &mut Client) -> String {
    let provides = r#"[[powerbox.provides]]
api = "echo-api"
title = "Echo API"
path_prefix = "/api/"
permissions = ["edit"]"#;
    crate::grainkit::install_python_app(c, "powerbox_app.py", "Powerbox test", "", provides)
}

#[path = "../../../powerbox/tests/support/smtp_relay.rs"]
mod smtp_relay;
#[allow(unused_imports)]
pub use smtp_relay::Relay;

