//! Runs the built `echo` on a free port (its /var in a temporary directory) and checks every
//! route over raw TCP: keep-alive, HEAD, chunked bodies, Range and conditional requests,
//! cookies, statuses, the WebSocket echo (handshake and frames by hand), the crash routes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    port: u16,
}

/// A temporary directory standing in for the grain's /var, removed when dropped.
struct TempVar(PathBuf);

impl std::ops::Deref for TempVar {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempVar {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_var() -> TempVar {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!("echo-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempVar(d)
}

impl Server {
    fn start(var: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_echo"))
            .args(args)
            .arg("0")
            .env("ECHO_VAR_DIR", var)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("startup line {line:?}"));
        Server { child, port }
    }
    fn conn(&self) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn { r: BufReader::new(s.try_clone().unwrap()), w: s }
    }
    /// One request on a new connection.
    fn get(&self, target: &str, headers: &[&str]) -> Resp {
        let mut c = self.conn();
        c.request("GET", target, headers, None);
        c.response(false)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str())
    }
    fn all(&self, n: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k == n).map(|(_, v)| v.as_str()).collect()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn pattern(i: u64) -> u8 {
    ((i * 31 + 7) % 251) as u8
}

impl Conn {
    fn request(&mut self, method: &str, target: &str, headers: &[&str], body: Option<&[u8]>) {
        let mut h = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n");
        for l in headers {
            h.push_str(l);
            h.push_str("\r\n");
        }
        if let Some(b) = body {
            h.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        h.push_str("\r\n");
        self.w.write_all(h.as_bytes()).unwrap();
        if let Some(b) = body {
            self.w.write_all(b).unwrap();
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l.trim_end_matches(['\r', '\n']).to_owned()
    }

    fn response(&mut self, head: bool) -> Resp {
        let status_line = self.line();
        let status: u16 = status_line.split(' ').nth(1).unwrap_or_else(|| panic!("status line {status_line:?}")).parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').unwrap();
            headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut r = Resp { status, headers, body: Vec::new() };
        if head || status == 204 || status == 304 || status == 101 {
            return r;
        }
        if r.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line(), 16).unwrap();
                let mut chunk = vec![0; size];
                self.r.read_exact(&mut chunk).unwrap();
                r.body.extend_from_slice(&chunk);
                self.line();
                if size == 0 {
                    break;
                }
            }
        } else {
            let n: usize = r.header("content-length").expect("a length").parse().unwrap();
            r.body = vec![0; n];
            self.r.read_exact(&mut r.body).unwrap();
        }
        r
    }
}

#[test]
fn keep_alive_any_method_and_head() {
    let s = Server::start(&temp_var(), &[]);
    let mut c = s.conn();
    c.request("PROPFIND", "/headers?x=1", &["Depth: 1", "X-A: one", "X-A: two"], Some(b"<propfind/>"));
    let r = c.response(false);
    assert_eq!(r.status, 200);
    let j = r.text();
    assert!(j.contains(r#""method":"PROPFIND""#) && j.contains(r#""path":"/headers?x=1""#), "{j}");
    assert!(j.contains(r#""x-a":["one","two"]"#) && j.contains(r#""depth":"1""#) && j.contains(r#""body_bytes":11"#), "{j}");
    // A chunked request body on the same connection.
    c.w.write_all(b"REPORT /headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nT: 1\r\n\r\n").unwrap();
    let j = c.response(false).text();
    assert!(j.contains(r#""method":"REPORT""#) && j.contains(r#""body_bytes":8"#), "{j}");
    c.request("HEAD", "/", &[], None);
    let r = c.response(true);
    assert_eq!(r.status, 200);
    assert!(r.header("content-length").unwrap().parse::<usize>().unwrap() > 500);
    c.request("GET", "/status/404x", &[], None);
    assert_eq!(c.response(false).status, 400);
    c.request("GET", "/nope", &["Connection: close"], None);
    let r = c.response(false);
    assert_eq!((r.status, r.header("connection")), (404, Some("close")));
    let mut rest = Vec::new();
    c.r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn index_shows_identity_and_notes_need_edit() {
    let var = temp_var();
    let s = Server::start(&var, &[]);
    let editor = [
        "X-Granary-User-Id: u123",
        "X-Granary-Username: J%C3%BCrgen%20%3Cb%3E",
        "X-Granary-User-Handle: jurgen",
        "X-Granary-Permissions: edit,admin",
        "X-Granary-Session-Id: s1",
        "X-Granary-Base-Path: https://g1.example.org",
    ];
    let page = s.get("/", &editor).text();
    assert!(page.contains("<title>Echo</title>"));
    assert!(page.contains(r#"<code id="username">Jürgen &lt;b&gt;</code>"#), "{page}");
    assert!(page.contains(r#"<code id="user-id">u123</code>"#));
    assert!(page.contains(r#"<code id="base-path">https://g1.example.org</code>"#));
    assert!(page.contains(r#"<ul id="permissions"><li>edit</li><li>admin</li></ul>"#));
    assert!(page.contains(r#"id="can-edit" class="yes">yes<"#));
    let viewer = ["X-Granary-Username: Anonymous", "X-Granary-Permissions: "];
    let page = s.get("/", &viewer).text();
    assert!(page.contains(r#"<code id="user-id" data-absent></code>"#));
    assert!(page.contains(r#"<ul id="permissions"></ul>"#) && page.contains(r#"id="can-edit" class="no">no<"#));

    let mut c = s.conn();
    c.request("POST", "/notes", &["X-Granary-Permissions: admin"], Some(b"note=nope"));
    let r = c.response(false);
    assert_eq!(r.status, 403);
    assert!(r.text().contains("needs the \"edit\" permission"));
    c.request("POST", "/notes", &["X-Granary-Permissions: edit"], Some(b"note=first+note%21"));
    let r = c.response(false);
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    drop(s);
    // Notes persist across restarts (in /var/notes.txt).
    let s = Server::start(&var, &[]);
    assert_eq!(s.get("/notes", &[]).text(), "{\"notes\":[\"first note!\"]}\n");
    assert!(s.get("/", &viewer).text().contains("<ul id=\"notes\"><li>first note!</li></ul>"));
    assert_eq!(std::fs::read_to_string(var.join("notes.txt")).unwrap(), "first note!\n");
}

#[test]
fn download_streams_the_pattern() {
    let s = Server::start(&temp_var(), &[]);
    let n = 5_000_000u64;
    let r = s.get(&format!("/download?bytes={n}"), &[]);
    assert_eq!(r.header("content-length"), Some("5000000"));
    assert!(r.body.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)));
    let r = s.get("/download?bytes=300000&chunked=1", &[]);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body.len(), 300000);
    assert!(r.body.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)));
    let mut c = s.conn();
    c.request("HEAD", "/download?bytes=123", &[], None);
    assert_eq!(c.response(true).header("content-length"), Some("123"));
    c.request("GET", "/download?bytes=0", &[], None);
    assert_eq!(c.response(false).body.len(), 0);
}

#[test]
fn upload_counts_and_sums() {
    let s = Server::start(&temp_var(), &[]);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let sum: u64 = data.iter().map(|&b| b as u64).sum();
    let mut c = s.conn();
    c.request("PUT", "/upload", &[], Some(&data));
    assert_eq!(c.response(false).text(), format!("{{\"bytes\":3000000,\"sum\":{sum}}}\n"));
    c.w.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n").unwrap();
    assert_eq!(c.line(), "HTTP/1.1 100 Continue");
    assert_eq!(c.line(), "");
    for part in data.chunks(100_000) {
        c.w.write_all(format!("{:x}\r\n", part.len()).as_bytes()).unwrap();
        c.w.write_all(part).unwrap();
        c.w.write_all(b"\r\n").unwrap();
    }
    c.w.write_all(b"0\r\n\r\n").unwrap();
    assert_eq!(c.response(false).text(), format!("{{\"bytes\":3000000,\"sum\":{sum}}}\n"));
    c.request("GET", "/upload", &[], None);
    assert_eq!(c.response(false).status, 405);
}

#[test]
fn file_ranges_and_conditionals() {
    let s = Server::start(&temp_var(), &[]);
    let size = 1u64 << 20;
    let r = s.get("/file", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, size);
    assert!(r.body.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)));
    let etag = r.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"'));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("cache-control"), Some("max-age=60"));
    let lm = r.header("last-modified").unwrap().to_owned();

    for (range, start, end) in [("bytes=10-19", 10, 19), ("bytes=1048570-", 1048570, size - 1), ("bytes=-5", size - 5, size - 1), ("bytes=100-99999999", 100, size - 1)] {
        let r = s.get("/file", &[&format!("Range: {range}")]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.header("content-range").unwrap(), format!("bytes {start}-{end}/{size}"));
        assert_eq!(r.body, (start..=end).map(pattern).collect::<Vec<_>>(), "{range}");
    }
    for range in ["bytes=1048576-", "bytes=-0"] {
        let r = s.get("/file", &[&format!("Range: {range}")]);
        assert_eq!((r.status, r.header("content-range")), (416, Some("bytes */1048576")), "{range}");
    }
    assert_eq!(s.get("/file", &["Range: bytes=0-1,5-6"]).status, 200);
    let inm = format!("If-None-Match: {etag}");
    assert_eq!(s.get("/file", &[&inm]).status, 304);
    assert_eq!(s.get("/file", &["If-None-Match: \"other\""]).status, 200);
    assert_eq!(s.get("/file", &["If-Match: \"other\""]).status, 412);
    assert_eq!(s.get("/file", &[&format!("If-Match: {etag}"), "Range: bytes=0-0"]).status, 206);
    assert_eq!(s.get("/file", &[&format!("If-Modified-Since: {lm}")]).status, 304);
    assert_eq!(s.get("/file", &["If-Modified-Since: Sun, 31 Dec 2023 23:59:59 GMT"]).status, 200);
    assert_eq!(s.get("/file", &["Range: bytes=0-0", "If-Range: \"old\""]).status, 200);
    let mut c = s.conn();
    c.request("HEAD", "/file", &["Range: bytes=0-9"], None);
    let r = c.response(true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("1048576")));
}

#[test]
fn cookies_redirects_statuses_and_var() {
    let var = temp_var();
    let s = Server::start(&var, &["--new"]);
    let r = s.get("/cookie/set?theme=dark", &[]);
    assert_eq!(r.all("set-cookie"), ["theme=dark; Path=/; HttpOnly", "theme_domain=dark; Path=/; Domain=example.org"]);
    assert_eq!(s.get("/cookie/show", &["Cookie: a=1; b=x y"]).text(), "{\"a\":\"1\",\"b\":\"x y\"}\n");
    let r = s.get("/redirect?to=/x%3Fy%3D1", &[]);
    assert_eq!((r.status, r.header("location")), (302, Some("/x?y=1")));
    for n in [200, 201, 204, 304, 400, 418, 500, 503, 599] {
        let r = s.get(&format!("/status/{n}"), &[]);
        assert_eq!(r.status, n);
        assert_eq!(r.body.is_empty(), n == 204 || n == 304);
    }
    assert_eq!(s.get("/status/600", &[]).status, 400);
    let v1 = s.get("/var", &[]).text();
    assert!(v1.contains("\"visits\":1") && v1.contains("{\"name\":\"created\",\"kind\":\"file\""), "{v1}");
    assert!(s.get("/var", &[]).text().contains("\"visits\":2"));
    assert_eq!(std::fs::read_to_string(var.join("visits")).unwrap(), "2\n");
}

#[test]
fn slow_answers_concurrently() {
    let s = Server::start(&temp_var(), &[]);
    let start = Instant::now();
    let mut cs: Vec<Conn> = (0..4).map(|_| s.conn()).collect();
    for c in &mut cs {
        c.request("GET", "/slow?ms=400", &[], None);
    }
    for c in &mut cs {
        assert_eq!(c.response(false).text(), "slept 400 ms\n");
    }
    assert!(start.elapsed() < Duration::from_millis(1200), "{:?}", start.elapsed());
}

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The next server frame: (fin, opcode, payload); server frames are never masked.
fn read_frame(c: &mut Conn) -> (bool, u8, Vec<u8>) {
    let mut h = [0u8; 2];
    c.r.read_exact(&mut h).unwrap();
    assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
    let mut len = (h[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0; 2];
        c.r.read_exact(&mut b).unwrap();
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0; 8];
        c.r.read_exact(&mut b).unwrap();
        len = u64::from_be_bytes(b);
    }
    let mut p = vec![0; len as usize];
    c.r.read_exact(&mut p).unwrap();
    (h[0] & 0x80 != 0, h[0] & 0x0f, p)
}

fn ws_connect(s: &Server) -> Conn {
    let mut c = s.conn();
    c.request(
        "GET",
        "/ws",
        &[
            "Upgrade: websocket",
            "Connection: keep-alive, Upgrade",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol: chat, superchat",
        ],
        None,
    );
    let r = c.response(false);
    assert_eq!(r.status, 101);
    assert_eq!(r.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_eq!(r.header("sec-websocket-protocol"), Some("chat"));
    c
}

#[test]
fn websocket_echo() {
    let s = Server::start(&temp_var(), &[]);
    let mut c = ws_connect(&s);
    c.w.write_all(&frame(true, 1, "héllo".as_bytes())).unwrap();
    assert_eq!(read_frame(&mut c), (true, 1, "héllo".as_bytes().to_vec()));
    c.w.write_all(&frame(true, 2, &[0, 1, 2, 255])).unwrap();
    assert_eq!(read_frame(&mut c), (true, 2, vec![0, 1, 2, 255]));
    // Fragmented, with a ping in between.
    c.w.write_all(&frame(false, 1, b"frag")).unwrap();
    c.w.write_all(&frame(true, 9, b"are you there")).unwrap();
    c.w.write_all(&frame(true, 0, b"mented")).unwrap();
    assert_eq!(read_frame(&mut c), (true, 10, b"are you there".to_vec()));
    assert_eq!(read_frame(&mut c), (true, 1, b"fragmented".to_vec()));
    // A 16 MiB message (the limit) comes back whole.
    let big: Vec<u8> = (0..16u32 << 20).map(|i| (i % 253) as u8).collect();
    c.w.write_all(&frame(true, 2, &big)).unwrap();
    let (fin, op, p) = read_frame(&mut c);
    assert!(fin && op == 2 && p == big);
    let mut close = 4001u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    c.w.write_all(&frame(true, 8, &close)).unwrap();
    assert_eq!(read_frame(&mut c), (true, 8, close));
    let mut rest = Vec::new();
    c.r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    // Over 16 MiB: closed with 1009 before the payload is read.
    let mut c = ws_connect(&s);
    let mut h = vec![0x82, 0x80 | 127];
    h.extend_from_slice(&((16u64 << 20) + 1).to_be_bytes());
    c.w.write_all(&h).unwrap();
    assert_eq!(read_frame(&mut c), (true, 8, 1009u16.to_be_bytes().to_vec()));
    // Invalid UTF-8 text: 1007.
    let mut c = ws_connect(&s);
    c.w.write_all(&frame(true, 1, &[0xff, 0xfe])).unwrap();
    assert_eq!(read_frame(&mut c), (true, 8, 1007u16.to_be_bytes().to_vec()));
    // Not an upgrade.
    assert_eq!(s.get("/ws", &[]).status, 426);
}

#[test]
fn crash_aborts_the_process() {
    let mut s = Server::start(&temp_var(), &[]);
    let mut c = s.conn();
    c.request("GET", "/crash", &[], None);
    let mut got = Vec::new();
    let _ = c.r.read_to_end(&mut got);
    assert!(got.is_empty(), "no response at all");
    let status = s.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(6), "{status:?}");

    let mut s = Server::start(&temp_var(), &[]);
    let mut c = s.conn();
    c.request("GET", "/crash?mid_body=1", &[], None);
    assert_eq!(c.line(), "HTTP/1.1 200 OK");
    let mut got = Vec::new();
    let _ = c.r.read_to_end(&mut got);
    let body = &got[got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert!(!body.is_empty() && body.len() < 1 << 20, "{}", body.len());
    assert!(got.windows(24).any(|w| w == b"Content-Length: 1048576\r"));
    assert_eq!(s.child.wait().unwrap().signal(), Some(6));
}
