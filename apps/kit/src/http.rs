//! HTTP/1.1 for the sample apps: a thread-per-connection server with keep-alive, and a client
//! for the bridge's local API and its proxy (`$GRANARY_API`, `$HTTP_PROXY`). Bodies are read
//! whole, up to a limit: these apps exchange small JSON documents and HTML pages.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Longest request line or header line, and most header lines.
const MAX_LINE: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;

/// A request as the app sees it; header names are lower case.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query without `?` ("" when none).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The decoded value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        parse_form(&self.query).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The permission names in `X-Granary-Permissions` (set by the bridge on every request).
    pub fn permissions(&self) -> Vec<&str> {
        self.header("x-granary-permissions").unwrap_or("").split(',').map(str::trim).filter(|p| !p.is_empty()).collect()
    }

    pub fn has_permission(&self, name: &str) -> bool {
        self.permissions().contains(&name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: vec![("Content-Type".into(), content_type.into())], body: body.into() }
    }
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.into())
    }
    pub fn json(status: u16, body: &crate::json::Json) -> Response {
        Response::new(status, "application/json", format!("{body}\n"))
    }
    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &crate::json::Json::obj([("error", crate::json::Json::from(message))]))
    }
    /// An HTML page; scripts, styles and images only from the app itself or inline.
    pub fn html(body: String) -> Response {
        Response::new(200, "text/html; charset=utf-8", body).header(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
        )
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What reading one request gave.
#[derive(Debug)]
pub enum Incoming {
    Request(Request),
    /// The client closed the connection between requests.
    Closed,
    /// A request that cannot be served: answer with this status and message, then close.
    Bad(u16, String),
}

fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > MAX_LINE || !buf.ends_with(b"\n") {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long or cut short"));
    }
    buf.pop();
    if buf.ends_with(b"\r") {
        buf.pop();
    }
    String::from_utf8(buf).map(Some).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "header is not UTF-8"))
}

/// Header lines up to the empty line, names lower-cased.
fn read_headers(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "headers cut short"))?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (n, v) = line.split_once(':').ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "header without `:`"))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        if headers.len() > MAX_HEADERS {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "too many headers"));
        }
    }
}

/// Reads a body framed by `headers` (Content-Length or chunked) up to `max` bytes. `Ok(None)`
/// when it is longer. `until_close` reads to the end of the stream when there is no framing
/// (responses); requests without framing have no body.
fn read_body(r: &mut impl BufRead, headers: &[(String, String)], max: usize, until_close: bool) -> io::Result<Option<Vec<u8>>> {
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
    if get("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let line = read_line(r)?.ok_or_else(|| bad("chunked body cut short"))?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                while read_line(r)?.is_some_and(|l| !l.is_empty()) {}
                return Ok(Some(body));
            }
            if body.len() + size > max {
                return Ok(None);
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r)?;
        }
    }
    if let Some(len) = get("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        if len > max {
            return Ok(None);
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        return Ok(Some(body));
    }
    if !until_close {
        return Ok(Some(Vec::new()));
    }
    let mut body = Vec::new();
    r.take(max as u64 + 1).read_to_end(&mut body)?;
    Ok(if body.len() > max { None } else { Some(body) })
}

/// Reads one request, its body at most `max_body` bytes.
pub fn read_request(r: &mut impl BufRead, max_body: usize) -> io::Result<Incoming> {
    let line = loop {
        match read_line(r)? {
            None => return Ok(Incoming::Closed),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Ok(Incoming::Bad(400, format!("malformed request line: {line}")));
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Ok(Incoming::Bad(400, format!("unsupported request line: {line}")));
    }
    let headers = match read_headers(r) {
        Ok(h) => h,
        Err(e) => return Ok(Incoming::Bad(431, format!("bad headers: {e}"))),
    };
    let body = match read_body(r, &headers, max_body, false)? {
        Some(b) => b,
        None => return Ok(Incoming::Bad(413, format!("the request body is over {max_body} bytes"))),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Incoming::Request(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body,
    }))
}

/// Writes `res` with a Content-Length (no body for HEAD, 204 and 304).
pub fn write_response(w: &mut impl Write, res: &Response, head_only: bool, close: bool) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", res.status, reason(res.status));
    for (n, v) in &res.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    let no_body = head_only || res.status == 204 || res.status == 304;
    if res.status != 204 && res.status != 304 {
        out.push_str(&format!("Content-Length: {}\r\n", res.body.len()));
    }
    out.push_str("Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n");
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes())?;
    if !no_body {
        w.write_all(&res.body)?;
    }
    w.flush()
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        303 => "See Other",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Serves `handler` on `listener` forever, a thread per connection. Connections idle for a
/// minute are closed.
pub fn serve(listener: TcpListener, max_body: usize, handler: Arc<dyn Fn(&Request) -> Response + Send + Sync>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let handler = handler.clone();
        std::thread::spawn(move || {
            let _ = connection(stream, max_body, &*handler);
        });
    }
}

fn connection(stream: TcpStream, max_body: usize, handler: &(dyn Fn(&Request) -> Response + Send + Sync)) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let _ = stream.set_nodelay(true);
    let mut r = BufReader::new(stream.try_clone()?);
    let mut w = stream;
    loop {
        match read_request(&mut r, max_body)? {
            Incoming::Closed => return Ok(()),
            Incoming::Bad(status, why) => return write_response(&mut w, &Response::text(status, format!("{why}\n")), false, true),
            Incoming::Request(req) => {
                let close = req.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
                let res = handler(&req);
                write_response(&mut w, &res, req.method == "HEAD", close)?;
                if close {
                    return Ok(());
                }
            }
        }
    }
}

/// `a=b&c=d` (or a query) decoded: `+` is a space, `%XX` a byte, invalid UTF-8 replaced.
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (percent_decode(k), percent_decode(v))
    }).collect()
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// An answer the client read.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// `host:port` of an `http://host:port[/]` URL (an environment variable such as
/// `GRANARY_API`); the error says what was wrong with it.
pub fn authority_of(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("`{url}` is not an http:// URL"))?;
    let auth = rest.trim_end_matches('/');
    if auth.is_empty() || auth.contains('/') || !auth.contains(':') {
        return Err(format!("`{url}` is not of the form http://HOST:PORT"));
    }
    Ok(auth.to_owned())
}

/// One request to `authority` (`host:port`) with `target` as the request target (a path, or an
/// absolute URL for a proxy). The answer's body is read up to `max_body` bytes (more is an
/// error). The connection is closed afterwards. Reading and connecting time out after `timeout`.
pub fn request(
    authority: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    max_body: usize,
    timeout: Duration,
) -> io::Result<ClientResponse> {
    use std::net::ToSocketAddrs;
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{authority} has no address")))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let host = if target.starts_with('/') { authority.to_owned() } else { target.split('/').nth(2).unwrap_or(authority).to_owned() };
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        if n.bytes().chain(v.bytes()).any(|b| b == b'\r' || b == b'\n') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("header {n} contains a line break")));
        }
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut w = stream.try_clone()?;
    w.write_all(out.as_bytes())?;
    w.write_all(body)?;
    w.flush()?;
    let mut r = BufReader::new(stream);
    loop {
        let line = read_line(&mut r)?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection without answering"))?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .filter(|_| line.starts_with("HTTP/1."))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP status line: {line}")))?;
        let headers = read_headers(&mut r)?;
        if (100..200).contains(&status) {
            continue; // interim answers
        }
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else {
            read_body(&mut r, &headers, max_body, true)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("the answer is over {max_body} bytes")))?
        };
        return Ok(ClientResponse { status, headers, body });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Incoming {
        read_request(&mut io::Cursor::new(raw.as_bytes().to_vec()), 16).unwrap()
    }

    #[test]
    fn requests_are_parsed_with_their_bodies() {
        let Incoming::Request(r) = parse("POST /api/notes?x=a%20b&y=1+2 HTTP/1.1\r\nHost: h\r\nX-Granary-Permissions: read, write\r\nContent-Length: 5\r\n\r\nhello") else { panic!() };
        assert_eq!((r.method.as_str(), r.path.as_str(), r.body.as_slice()), ("POST", "/api/notes", &b"hello"[..]));
        assert_eq!((r.query_param("x").as_deref(), r.query_param("y").as_deref()), (Some("a b"), Some("1 2")));
        assert_eq!(r.permissions(), ["read", "write"]);
        assert!(r.has_permission("write") && !r.has_permission("admin"));
        let Incoming::Request(r) = parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n") else { panic!() };
        assert_eq!(r.body, b"abcde");
        assert!(matches!(parse(""), Incoming::Closed));
        assert!(matches!(parse("POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n"), Incoming::Bad(413, _)));
        assert!(matches!(parse("GET /\r\n\r\n"), Incoming::Bad(400, _)));
        assert!(matches!(parse("GET http://x/ HTTP/1.1\r\n\r\n"), Incoming::Bad(400, _)));
        assert!(matches!(parse("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), Incoming::Bad(431, _)));
    }

    #[test]
    fn forms_and_percent_encoding() {
        assert_eq!(parse_form("a=1&b=%C3%A9+x&c&=v&d=%zz"), [
            ("a".into(), "1".into()), ("b".into(), "é x".into()), ("c".into(), "".into()), ("".into(), "v".into()), ("d".into(), "%zz".into())
        ]);
        assert_eq!(percent_encode("a b/é?&=~"), "a%20b%2F%C3%A9%3F%26%3D~");
        assert_eq!(percent_decode(&percent_encode("x y+z%")), "x y+z%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn authorities_of_environment_urls() {
        assert_eq!(authority_of("http://127.0.0.1:7870").unwrap(), "127.0.0.1:7870");
        assert_eq!(authority_of("http://127.0.0.1:7870/").unwrap(), "127.0.0.1:7870");
        for bad in ["https://127.0.0.1:7870", "127.0.0.1:7870", "http://host", "http://h:1/path"] {
            assert!(authority_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_and_server_talk_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let auth = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            serve(listener, 1024, Arc::new(|r: &Request| {
                let seen = format!("{} {}?{} auth={} body={}", r.method, r.path, r.query, r.header("authorization").unwrap_or("-"), String::from_utf8_lossy(&r.body));
                Response::text(201, seen).header("X-Test", "1")
            }))
        });
        let t = Duration::from_secs(5);
        let res = request(&auth, "POST", "/p?q=1", &[("Authorization", "Bearer gs_x")], b"hi", 1024, t).unwrap();
        assert_eq!(res.status, 201);
        assert_eq!(String::from_utf8(res.body).unwrap(), "POST /p?q=1 auth=Bearer gs_x body=hi");
        assert!(res.headers.contains(&("x-test".into(), "1".into())));
        // The absolute form a proxy gets is refused by an app server.
        let res = request(&auth, "GET", "http://notes/notes", &[], b"", 1024, t).unwrap();
        assert_eq!(res.status, 400);
        // Too large either way.
        assert_eq!(request(&auth, "POST", "/", &[], &[b'x'; 2000], 1024, t).unwrap().status, 413);
        assert!(request(&auth, "POST", "/", &[], &[b'x'; 1000], 10, t).unwrap_err().to_string().contains("over 10 bytes"));
        assert!(request(&auth, "GET", "/", &[("X", "a\r\nY: b")], b"", 1024, t).is_err());
    }
}
