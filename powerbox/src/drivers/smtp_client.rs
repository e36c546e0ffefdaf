//! The small, blocking SMTP client the send-mail driver uses to hand one message to the
//! administrator's relay: EHLO (or HELO), optional STARTTLS or implicit TLS (rustls, the relay's
//! certificate checked against its host name with the webpki roots plus the administrator's
//! extra CAs), optional AUTH PLAIN or LOGIN (only over TLS, or to a relay on loopback), MAIL
//! FROM, RCPT TO, DATA with dot-stuffing, QUIT. Runs on `blocking`'s thread pool.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_rustls::pki_types::ServerName;
use futures_rustls::rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::DriverError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelaySecurity {
    /// Plain TCP: a relay on this machine or a trusted network.
    #[default]
    None,
    /// Plain TCP upgraded with STARTTLS before anything else is sent (port 587); a relay that
    /// does not offer it is refused.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

impl RelaySecurity {
    /// The setting's spelling: `none`, `starttls`, `tls`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "none" => Some(Self::None),
            "starttls" => Some(Self::StartTls),
            "tls" => Some(Self::Tls),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StartTls => "starttls",
            Self::Tls => "tls",
        }
    }
}

/// The account the server signs in to the relay with.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayLogin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RelayLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayLogin").field("username", &self.username).finish_non_exhaustive()
    }
}

/// The administrator's relay (settings `smtp_relay` = `host:port`, `smtp_security`,
/// `smtp_username`, `smtp_password`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpRelay {
    pub host: String,
    pub port: u16,
    pub security: RelaySecurity,
    pub login: Option<RelayLogin>,
    /// DER certificates of extra certificate authorities to trust (the administrator's).
    pub extra_roots: Vec<Vec<u8>>,
}

impl SmtpRelay {
    /// A plain relay without login.
    pub fn plain(host: impl Into<String>, port: u16) -> Self {
        Self { host: host.into(), port, security: RelaySecurity::None, login: None, extra_roots: Vec::new() }
    }

    /// Whether a password may be sent to it: over TLS, or to a relay on loopback.
    pub fn may_log_in(&self) -> bool {
        self.security != RelaySecurity::None || is_loopback(&self.host)
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

impl std::fmt::Display for SmtpRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The connection to the relay: TCP, or TLS over TCP.
enum Link {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Link::Plain(s) => s.flush(),
            Link::Tls(s) => s.flush(),
        }
    }
}

/// One SMTP transaction with the relay (blocking).
pub fn send(relay: &SmtpRelay, from: &str, to: &[String], data: &[u8]) -> Result<(), DriverError> {
    let io = |why: String| DriverError::RelayIo { relay: relay.to_string(), why };
    if relay.login.is_some() && !relay.may_log_in() {
        return Err(io("a relay login needs TLS or STARTTLS unless the relay is on this machine; the password is not sent in clear".into()));
    }
    let tcp = connect(relay)?;
    let helo = from.rsplit_once('@').map_or("granary", |(_, d)| d).to_string();
    let mut c = match relay.security {
        RelaySecurity::Tls => Conversation::new(relay, Link::Tls(Box::new(tls(relay, tcp)?))),
        _ => Conversation::new(relay, Link::Plain(tcp)),
    };
    c.step(None, "the greeting", &[220])?;
    let mut ehlo = c.ehlo(&helo)?;
    if relay.security == RelaySecurity::StartTls {
        if !ehlo.as_ref().is_some_and(|e| offers(e, "STARTTLS")) {
            return Err(io("it does not offer STARTTLS; choose another security setting in Admin → Settings".into()));
        }
        c.command("STARTTLS", &[220])?;
        let tcp = c.into_tcp()?;
        c = Conversation::new(relay, Link::Tls(Box::new(tls(relay, tcp)?)));
        ehlo = c.ehlo(&helo)?;
    }
    if let Some(login) = &relay.login {
        let mechanisms = ehlo.as_deref().and_then(|e| e.lines().find_map(|l| l.strip_prefix("AUTH ").or_else(|| l.strip_prefix("AUTH=")))).unwrap_or_default();
        let has = |m: &str| mechanisms.split_whitespace().any(|x| x.eq_ignore_ascii_case(m));
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        if has("PLAIN") {
            let token = b64(format!("\0{}\0{}", login.username, login.password).as_bytes());
            c.secret_command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN", &[235])?;
        } else if has("LOGIN") {
            c.command("AUTH LOGIN", &[334])?;
            c.secret_command(&b64(login.username.as_bytes()), "the user name", &[334])?;
            c.secret_command(&b64(login.password.as_bytes()), "the password", &[235])?;
        } else {
            return Err(io(format!("it offers no AUTH PLAIN or LOGIN (it offers {mechanisms:?}); remove the relay login or use another relay")));
        }
    }
    c.command(&format!("MAIL FROM:<{from}>"), &[250])?;
    for t in to {
        c.command(&format!("RCPT TO:<{t}>"), &[250, 251])?;
    }
    c.command("DATA", &[354])?;
    let mut stuffed = Vec::with_capacity(data.len() + 64);
    for line in data.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    stuffed.extend_from_slice(b".\r\n");
    c.step(Some(&stuffed), "the message data", &[250])?;
    let _ = c.command("QUIT", &[221]);
    Ok(())
}

fn connect(relay: &SmtpRelay) -> Result<TcpStream, DriverError> {
    let io = |why: String| DriverError::RelayIo { relay: relay.to_string(), why };
    let addrs = (relay.host.as_str(), relay.port).to_socket_addrs().map_err(|e| io(format!("cannot resolve it: {e}")))?;
    let mut last = io("it resolves to no address".into());
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(IO_TIMEOUT)).and_then(|_| s.set_write_timeout(Some(IO_TIMEOUT))).map_err(|e| io(e.to_string()))?;
                return Ok(s);
            }
            Err(e) => last = io(format!("cannot connect to {a}: {e}")),
        }
    }
    Err(last)
}

/// The TLS handshake with the relay, its certificate checked for its host name.
fn tls(relay: &SmtpRelay, tcp: TcpStream) -> Result<StreamOwned<ClientConnection, TcpStream>, DriverError> {
    let io = |why: String| DriverError::RelayIo { relay: relay.to_string(), why };
    let mut config: ClientConfig = (*super::tls::client_config(&relay.extra_roots)?).clone();
    config.alpn_protocols.clear();
    let host = relay.host.trim_matches(['[', ']']).to_string();
    let name = ServerName::try_from(host.clone()).map_err(|e| io(format!("{host} is not a valid TLS server name: {e}")))?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| io(format!("TLS: {e}")))?;
    let mut stream = StreamOwned::new(conn, tcp);
    // Complete the handshake now, so a certificate problem is reported as such.
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| io(format!("the TLS handshake failed: {e}")))?;
    }
    Ok(stream)
}

/// Whether an EHLO reply lists `extension`.
fn offers(ehlo: &str, extension: &str) -> bool {
    ehlo.lines().any(|l| l.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case(extension)))
}

/// One connection to the relay.
struct Conversation<'a> {
    r: BufReader<Link>,
    relay: &'a SmtpRelay,
}

impl<'a> Conversation<'a> {
    fn new(relay: &'a SmtpRelay, link: Link) -> Self {
        Conversation { r: BufReader::new(link), relay }
    }

    fn io(&self, why: String) -> DriverError {
        DriverError::RelayIo { relay: self.relay.to_string(), why }
    }

    /// EHLO, or HELO if the relay does not know EHLO; the EHLO reply's lines (extensions).
    fn ehlo(&mut self, helo: &str) -> Result<Option<String>, DriverError> {
        self.send(format!("EHLO {helo}\r\n").as_bytes())?;
        let (code, text) = read_reply(&mut self.r).map_err(|e| self.io(e.to_string()))?;
        if code == 250 {
            return Ok(Some(text));
        }
        self.command(&format!("HELO {helo}"), &[250])?;
        Ok(None)
    }

    fn command(&mut self, cmd: &str, want: &[u16]) -> Result<(), DriverError> {
        self.step(Some(format!("{cmd}\r\n").as_bytes()), cmd, want)
    }

    /// A command carrying a secret: errors name `what`, never the command.
    fn secret_command(&mut self, cmd: &str, what: &str, want: &[u16]) -> Result<(), DriverError> {
        self.step(Some(format!("{cmd}\r\n").as_bytes()), what, want)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), DriverError> {
        let w = self.r.get_mut();
        w.write_all(bytes).and_then(|_| w.flush()).map_err(|e| self.io(e.to_string()))
    }

    /// Sends `bytes` (if any), reads the reply, and fails unless its code is in `want`.
    fn step(&mut self, bytes: Option<&[u8]>, what: &str, want: &[u16]) -> Result<(), DriverError> {
        if let Some(b) = bytes {
            self.send(b)?;
        }
        let (code, text) = read_reply(&mut self.r).map_err(|e| self.io(e.to_string()))?;
        if want.contains(&code) {
            return Ok(());
        }
        let text = text.replace('\n', " ");
        Err(DriverError::RelayRefused { relay: self.relay.to_string(), reply: format!("{code} {text} (after {what})") })
    }

    /// The TCP stream back, to start TLS on it: only for a plain connection with nothing
    /// buffered (a relay that pipelines past its STARTTLS answer is refused).
    fn into_tcp(self) -> Result<TcpStream, DriverError> {
        if !self.r.buffer().is_empty() {
            return Err(self.io("it sent data after agreeing to STARTTLS".into()));
        }
        match self.r.into_inner() {
            Link::Plain(tcp) => Ok(tcp),
            Link::Tls(_) => Err(DriverError::RelayIo { relay: self.relay.to_string(), why: "STARTTLS on a TLS connection".into() }),
        }
    }
}

/// Reads one (possibly multi-line) SMTP reply: its code and its lines' text, one per line.
fn read_reply(r: &mut impl BufRead) -> std::io::Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the relay closed the connection"));
        }
        let line = line.trim_end();
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an SMTP reply: {line:?}")));
        };
        text.push_str(line.get(4..).unwrap_or_default());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push('\n');
    }
}
