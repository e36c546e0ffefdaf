//! A small HTTP/1.1 server side: request heads, Content-Length and chunked request bodies,
//! responses with a length, chunked or without a body (HEAD, 204, 304), keep-alive.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;

/// Longest request line or header line accepted.
const MAX_LINE: u64 = 32 * 1024;
/// Most header bytes accepted in one request head.
const MAX_HEAD: usize = 256 * 1024;

pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    pub path: String,
    pub query: String,
    pub http11: bool,
    /// Names lower-cased, values as sent (read as UTF-8, lossily), in order, repeats kept.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, split on commas (for list-valued headers).
    pub fn header_list(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_list(name).iter().any(|t| t.eq_ignore_ascii_case(token))
    }

    /// The decoded value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        crate::util::parse_form(&self.query).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    pub fn keep_alive(&self) -> bool {
        if self.http11 {
            !self.has_token("connection", "close")
        } else {
            self.has_token("connection", "keep-alive")
        }
    }
}

pub enum Head {
    Request(Request, BodyKind),
    /// The client closed the connection between requests.
    Closed,
    /// A malformed head: answer with this status and close.
    Bad(u16, &'static str),
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum BodyKind {
    Length(u64),
    Chunked,
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// Reads one line (with its CRLF or LF), at most MAX_LINE bytes; None at a clean EOF.
fn read_line(r: &mut BufReader<TcpStream>, line: &mut Vec<u8>) -> io::Result<Option<()>> {
    line.clear();
    let n = r.by_ref().take(MAX_LINE).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long or cut short"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(()))
}

pub fn read_head(r: &mut BufReader<TcpStream>) -> io::Result<Head> {
    let mut line = Vec::new();
    // RFC 9112 2.2: ignore empty lines before the request line.
    loop {
        match read_line(r, &mut line) {
            Ok(None) => return Ok(Head::Closed),
            Ok(Some(())) if line.is_empty() => continue,
            Ok(Some(())) => break,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(Head::Bad(414, "request line too long")),
            Err(e) => return Err(e),
        }
    }
    let request_line = String::from_utf8_lossy(&line).into_owned();
    let parts: Vec<&str> = request_line.split(' ').collect();
    if parts.len() != 3 || !is_token(parts[0]) || parts[1].is_empty() {
        return Ok(Head::Bad(400, "malformed request line"));
    }
    let http11 = match parts[2] {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Ok(Head::Bad(505, "only HTTP/1.0 and HTTP/1.1")),
    };
    let target = parts[1].to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.clone(), String::new()),
    };
    let mut headers = Vec::new();
    let mut total = 0;
    loop {
        match read_line(r, &mut line) {
            Ok(Some(())) => {}
            Ok(None) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "head cut short")),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(Head::Bad(431, "header line too long")),
            Err(e) => return Err(e),
        }
        if line.is_empty() {
            break;
        }
        total += line.len();
        if total > MAX_HEAD {
            return Ok(Head::Bad(431, "request head too large"));
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Ok(Head::Bad(400, "header line without a colon"));
        };
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        if !is_token(&name) {
            return Ok(Head::Bad(400, "bad header name (obsolete line folding is not accepted)"));
        }
        let value = String::from_utf8_lossy(&line[colon + 1..]).trim_matches([' ', '\t']).to_owned();
        headers.push((name, value));
    }
    let method = parts[0].to_owned();
    let req = Request { method, target, path, query, http11, headers };
    let kind = if req.header("transfer-encoding").is_some() {
        match req.header_list("transfer-encoding").last() {
            Some(te) if te.eq_ignore_ascii_case("chunked") => BodyKind::Chunked,
            _ => return Ok(Head::Bad(400, "unsupported Transfer-Encoding (the last coding must be chunked)")),
        }
    } else {
        let lengths = req.header_list("content-length");
        match lengths.first() {
            None => BodyKind::Length(0),
            Some(first) => {
                if lengths.iter().any(|l| l != first) {
                    return Ok(Head::Bad(400, "conflicting Content-Length"));
                }
                match first.parse::<u64>() {
                    Ok(n) if first.bytes().all(|c| c.is_ascii_digit()) => BodyKind::Length(n),
                    _ => return Ok(Head::Bad(400, "bad Content-Length")),
                }
            }
        }
    };
    Ok(Head::Request(req, kind))
}

enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    Done,
}

/// The request body, decoded; reading past its end returns 0.
pub struct Body<'a> {
    r: &'a mut BufReader<TcpStream>,
    state: State,
}

impl<'a> Body<'a> {
    pub fn new(r: &'a mut BufReader<TcpStream>, kind: BodyKind) -> Self {
        let state = match kind {
            BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::ChunkSize,
        };
        Body { r, state }
    }

    /// Reads and discards the rest of the body, up to `limit` bytes. True if it all was read
    /// (the connection can carry another request).
    pub fn drain(&mut self, limit: u64) -> bool {
        let mut buf = [0u8; 16384];
        let mut n = 0u64;
        while !matches!(self.state, State::Done) {
            match self.read(&mut buf) {
                Ok(0) => return matches!(self.state, State::Done),
                Ok(k) => n += k as u64,
                Err(_) => return false,
            }
            if n > limit {
                return false;
            }
        }
        true
    }

    /// Reads the whole body into memory, refusing more than `limit` bytes.
    pub fn read_to_vec(&mut self, limit: u64) -> io::Result<Result<Vec<u8>, ()>> {
        let mut v = Vec::new();
        self.take(limit + 1).read_to_end(&mut v)?;
        Ok(if v.len() as u64 > limit { Err(()) } else { Ok(v) })
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Length(left) | State::ChunkData(left) => {
                    let want = (buf.len() as u64).min(left) as usize;
                    let n = self.r.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "request body cut short"));
                    }
                    let left = left - n as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => {
                            let mut crlf = Vec::new();
                            read_line(self.r, &mut crlf)?.ok_or_else(|| bad("chunk cut short"))?;
                            if !crlf.is_empty() {
                                return Err(bad("chunk data not followed by CRLF"));
                            }
                            State::ChunkSize
                        }
                        _ => State::ChunkData(left),
                    };
                    return Ok(n);
                }
                State::ChunkSize => {
                    let mut line = Vec::new();
                    read_line(self.r, &mut line)?.ok_or_else(|| bad("chunked body cut short"))?;
                    let line = String::from_utf8_lossy(&line);
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
                    if size == 0 {
                        // Trailers (dropped) up to the empty line.
                        loop {
                            let mut t = Vec::new();
                            read_line(self.r, &mut t)?.ok_or_else(|| bad("trailers cut short"))?;
                            if t.is_empty() {
                                break;
                            }
                        }
                        self.state = State::Done;
                    } else {
                        self.state = State::ChunkData(size);
                    }
                }
            }
        }
    }
}

pub type Writer = BufWriter<TcpStream>;
pub type StreamFn = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()>>;

pub enum ResBody {
    /// No content: `Content-Length: 0`, or no framing header at all for 204 and 304.
    Empty,
    Bytes(Vec<u8>),
    /// Written by the function as the response goes out; `Some(len)` sends a Content-Length
    /// (the function must write exactly that much), `None` a chunked body.
    Stream(Option<u64>, StreamFn),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ResBody,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response { status, headers: vec![("Content-Type".into(), content_type.into())], body: ResBody::Bytes(body.into()) }
    }
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }
    pub fn json(body: String) -> Self {
        Self::new(200, "application/json", body)
    }
    pub fn html(body: String) -> Self {
        Self::new(200, "text/html; charset=utf-8", body)
    }
    pub fn empty(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: ResBody::Empty }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        418 => "I'm a teapot",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// Counts what passes, so a streamed body can be checked against its Content-Length.
struct Counting<'a> {
    w: &'a mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.w.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Writes each `write` as one chunk (callers buffer, so chunks are up to 64 KiB).
struct Chunked<'a> {
    w: &'a mut dyn Write,
}

impl Write for Chunked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            write!(self.w, "{:x}\r\n", buf.len())?;
            self.w.write_all(buf)?;
            self.w.write_all(b"\r\n")?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// Writes `res` as the answer to `req`. Returns whether the connection may carry another
/// request (`keep` and the response's framing allow it).
pub fn write_response(w: &mut Writer, req: Option<&Request>, res: Response, mut keep: bool) -> io::Result<bool> {
    let head_only = req.is_some_and(|r| r.is_head());
    let http11 = req.is_none_or(|r| r.http11);
    let bodiless = matches!(res.status, 100..=199 | 204 | 304);
    write!(w, "HTTP/1.1 {} {}\r\n", res.status, reason(res.status))?;
    for (n, v) in &res.headers {
        write!(w, "{n}: {v}\r\n")?;
    }
    let mut chunked = false;
    if !bodiless {
        match &res.body {
            ResBody::Empty => write!(w, "Content-Length: 0\r\n")?,
            ResBody::Bytes(b) => write!(w, "Content-Length: {}\r\n", b.len())?,
            ResBody::Stream(Some(n), _) => write!(w, "Content-Length: {n}\r\n")?,
            ResBody::Stream(None, _) if http11 => {
                write!(w, "Transfer-Encoding: chunked\r\n")?;
                chunked = true;
            }
            // HTTP/1.0 has no chunking: the end of the connection ends the body.
            ResBody::Stream(None, _) => keep = false,
        }
    }
    if !keep {
        write!(w, "Connection: close\r\n")?;
    }
    write!(w, "\r\n")?;
    if !(head_only || bodiless) {
        match res.body {
            ResBody::Empty => {}
            ResBody::Bytes(b) => w.write_all(&b)?,
            ResBody::Stream(Some(n), f) => {
                let mut c = Counting { w, n: 0 };
                f(&mut c)?;
                if c.n != n {
                    // The app broke its own framing: the connection cannot be reused.
                    eprintln!("echo: a streamed body of {} bytes declared {n}", c.n);
                    w.flush()?;
                    return Ok(false);
                }
            }
            ResBody::Stream(None, f) if chunked => {
                {
                    let mut c = Chunked { w };
                    let mut b = BufWriter::with_capacity(64 * 1024, &mut c);
                    f(&mut b)?;
                    b.flush()?;
                }
                w.write_all(b"0\r\n\r\n")?;
            }
            ResBody::Stream(None, f) => f(w)?,
        }
    }
    w.flush()?;
    Ok(keep)
}
