//! Receiving mail: a small, strict SMTP server (RFC 5321 subset) for `<grain id>@<mail
//! domain>`. Written here rather than taken from a crate: the SMTP server crates are either
//! unmaintained or full MTAs, and this needs about 300 lines.
//!
//! Commands: HELO/EHLO (advertises PIPELINING, SIZE, 8BITMIME), MAIL FROM, RCPT TO, DATA,
//! RSET, NOOP, QUIT, VRFY (252); anything else 500, and the connection stays usable. A
//! recipient must be `[0-9a-z]{1,64}@<domain>` (the domain compared case-insensitively, the
//! local part lower-cased) that [`MailReceiver::accepts`] knows, else 550; at most
//! [`MAX_RECIPIENTS`] (452 beyond). DATA is dot-unstuffed, at most [`MAX_MESSAGE`] bytes (552,
//! after reading to the end), lines at most [`MAX_DATA_LINE`] bytes (552); command lines at
//! most [`MAX_COMMAND_LINE`] (500). A `Received:` field is prepended and
//! [`MailReceiver::deliver`] called once per grain; if any delivery fails the client gets 451
//! and will retry (grains that already took it may then get it twice, as with any MTA).
//! An idle connection is closed after [`MailReceiver::idle_timeout`] with 421.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures::future::LocalBoxFuture;
use futures::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Most recipients of one message.
pub const MAX_RECIPIENTS: usize = 100;
/// Largest message (after dot-unstuffing, before the `Received:` field).
pub const MAX_MESSAGE: usize = 10 << 20;
/// Longest command line, CRLF included.
pub const MAX_COMMAND_LINE: usize = 1000;
/// Longest line of message data, CRLF included (RFC 5321 asks for 1000; real mail is longer).
pub const MAX_DATA_LINE: usize = 64 * 1024;
/// Default idle time before the server hangs up.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Bad commands tolerated on one connection before it is closed.
const MAX_ERRORS: usize = 20;

/// One message for one grain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `MAIL FROM` (empty for bounces).
    pub envelope_from: String,
    /// The `RCPT TO` addresses at this grain.
    pub envelope_to: Vec<String>,
    /// The message with a `Received:` field prepended, CRLF line ends.
    pub data: Vec<u8>,
}

/// Why a grain did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("there is no grain {0} to deliver to")]
    NoSuchGrain(String),
    #[error("the grain could not take the message now: {0}")]
    Failed(String),
}

/// Delivers one message to one grain (by id).
pub type DeliverFn = dyn Fn(String, Delivery) -> LocalBoxFuture<'static, Result<(), DeliverError>>;

/// What the SMTP listener serves.
pub struct MailReceiver {
    /// The mail domain, e.g. `mail.example.com`: read for each connection, so a change of the
    /// setting applies to the next one.
    pub domain: Rc<dyn Fn() -> String>,
    /// Whether a grain id can take mail (checked at `RCPT TO`).
    pub accepts: Rc<dyn Fn(&str) -> bool>,
    /// Called once per grain for each message.
    pub deliver: Rc<DeliverFn>,
    /// Idle time before hanging up ([`IDLE_TIMEOUT`] in production).
    pub idle_timeout: Duration,
}

/// Accepts connections on `listener` forever, each served on `executor`.
pub async fn serve_smtp(listener: Async<TcpListener>, receiver: Rc<MailReceiver>, executor: Rc<LocalExecutor<'static>>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            Timer::after(Duration::from_millis(100)).await; // e.g. out of file descriptors
            continue;
        };
        let r = receiver.clone();
        executor.spawn(async move { let _ = serve_connection(stream, peer, &r).await; }).detach();
    }
}

/// A line read with a length limit.
enum Line {
    Ok(Vec<u8>),
    TooLong,
    Eof,
    Idle,
}

/// Reads one line (without its CRLF or LF) of at most `max` bytes; a longer one is read to
/// its end and reported as [`Line::TooLong`].
async fn read_line(r: &mut (impl AsyncBufRead + Unpin), max: usize, idle: Duration) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = match timeout(idle, r.fill_buf()).await {
            None => return Ok(Line::Idle),
            Some(b) => b?,
        };
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        let (take, end) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if !too_long {
            line.extend_from_slice(&buf[..take]);
            too_long = line.len() > max;
        }
        r.consume_unpin(take);
        if end {
            if too_long {
                return Ok(Line::TooLong);
            }
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Line::Ok(line));
        }
    }
}

#[derive(Default)]
struct Transaction {
    from: Option<String>,
    to: Vec<(String, String)>, // (grain id, address as given)
}

async fn serve_connection(stream: Async<TcpStream>, peer: SocketAddr, rx: &MailReceiver) -> std::io::Result<()> {
    let mut w = stream.get_ref().try_clone().map(Async::new)??;
    let mut r = BufReader::new(stream);
    let domain = (rx.domain)();
    send(&mut w, format!("220 {domain} ESMTP granary\r\n")).await?;
    let mut helo: Option<String> = None;
    let mut tx = Transaction::default();
    let mut errors = 0;
    loop {
        let line = match read_line(&mut r, MAX_COMMAND_LINE, rx.idle_timeout).await? {
            Line::Ok(l) => l,
            Line::Eof => return Ok(()),
            Line::Idle => return send(&mut w, "421 4.4.2 idle for too long, closing\r\n".into()).await,
            Line::TooLong => {
                send(&mut w, "500 5.5.2 line too long\r\n".into()).await?;
                continue;
            }
        };
        let line = String::from_utf8_lossy(&line).into_owned();
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        let verb = verb.to_ascii_uppercase();
        let arg = arg.trim();
        let answer = match verb.as_str() {
            "HELO" | "EHLO" if arg.is_empty() => "501 5.5.4 say who you are: HELO <domain>".to_string(),
            "HELO" => {
                helo = Some(arg.to_string());
                tx = Transaction::default();
                format!("250 {}", domain)
            }
            "EHLO" => {
                helo = Some(arg.to_string());
                tx = Transaction::default();
                format!("250-{}\r\n250-PIPELINING\r\n250-SIZE {MAX_MESSAGE}\r\n250 8BITMIME", domain)
            }
            "MAIL" if helo.is_none() => "503 5.5.1 say HELO or EHLO first".into(),
            "MAIL" if tx.from.is_some() => "503 5.5.1 a transaction is already in progress; RSET first".into(),
            "MAIL" => match path_arg(arg, "FROM:") {
                None => "501 5.5.4 syntax: MAIL FROM:<address>".into(),
                Some((_, params)) if declared_size(params).is_some_and(|n| n > MAX_MESSAGE) => {
                    format!("552 5.3.4 messages are limited to {MAX_MESSAGE} bytes")
                }
                Some((addr, _)) => {
                    tx.from = Some(addr);
                    "250 2.1.0 ok".into()
                }
            },
            "RCPT" if tx.from.is_none() => "503 5.5.1 MAIL FROM first".into(),
            "RCPT" => match path_arg(arg, "TO:") {
                None => "501 5.5.4 syntax: RCPT TO:<address>".into(),
                Some(_) if tx.to.len() >= MAX_RECIPIENTS => format!("452 4.5.3 at most {MAX_RECIPIENTS} recipients per message"),
                Some((addr, _)) => match grain_of(&addr, &domain) {
                    Some(g) if (rx.accepts)(&g) => {
                        tx.to.push((g, addr));
                        "250 2.1.5 ok".into()
                    }
                    Some(_) => "550 5.1.1 no such mailbox here".into(),
                    None => format!("550 5.7.1 this server only takes mail for <grain>@{}", domain),
                },
            },
            "DATA" if tx.from.is_none() => "503 5.5.1 MAIL FROM first".into(),
            "DATA" if tx.to.is_empty() => "554 5.5.1 no valid recipients".into(),
            "DATA" => {
                send(&mut w, "354 end data with <CR><LF>.<CR><LF>\r\n".into()).await?;
                let answer = match read_data(&mut r, rx.idle_timeout).await? {
                    Data::Idle => return send(&mut w, "421 4.4.2 idle for too long, closing\r\n".into()).await,
                    Data::Eof => return Ok(()),
                    Data::TooLarge => format!("552 5.3.4 messages are limited to {MAX_MESSAGE} bytes and lines to {MAX_DATA_LINE}"),
                    Data::Ok(data) => {
                        let received = received_field(helo.as_deref().unwrap_or_default(), peer, &domain);
                        deliver(rx, std::mem::take(&mut tx), received, data).await
                    }
                };
                tx = Transaction::default();
                answer
            }
            "RSET" => {
                tx = Transaction::default();
                "250 2.0.0 ok".into()
            }
            "NOOP" => "250 2.0.0 ok".into(),
            "VRFY" => "252 2.1.5 cannot verify, but will try delivery".into(),
            "QUIT" => return send(&mut w, "221 2.0.0 bye\r\n".into()).await,
            _ => "500 5.5.2 command not recognized".into(),
        };
        if answer.starts_with('5') && !answer.starts_with("55") {
            errors += 1;
            if errors > MAX_ERRORS {
                return send(&mut w, "421 4.7.0 too many errors, closing\r\n".into()).await;
            }
        }
        send(&mut w, format!("{answer}\r\n")).await?;
    }
}

async fn send(w: &mut Async<TcpStream>, text: String) -> std::io::Result<()> {
    w.write_all(text.as_bytes()).await
}

/// `FROM:<addr> params` → (addr, params). `<>` is the empty path.
fn path_arg<'a>(arg: &'a str, keyword: &str) -> Option<(String, &'a str)> {
    let rest = arg.get(..keyword.len()).filter(|k| k.eq_ignore_ascii_case(keyword)).map(|_| &arg[keyword.len()..])?;
    let rest = rest.trim_start().strip_prefix('<')?;
    let (addr, params) = rest.split_once('>')?;
    if addr.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'<') {
        return None;
    }
    Some((addr.to_string(), params.trim()))
}

/// The `SIZE=` parameter of MAIL FROM.
fn declared_size(params: &str) -> Option<usize> {
    params.split_whitespace().find_map(|p| p.get(..5).filter(|k| k.eq_ignore_ascii_case("SIZE=")).and_then(|_| p[5..].parse().ok()))
}

/// The grain id of `local@domain` if the domain is ours and the local part looks like one.
fn grain_of(addr: &str, domain: &str) -> Option<String> {
    let (local, d) = addr.rsplit_once('@')?;
    let local = local.to_ascii_lowercase();
    let ok = d.eq_ignore_ascii_case(domain)
        && (1..=64).contains(&local.len())
        && local.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
    ok.then_some(local)
}

enum Data {
    Ok(Vec<u8>),
    TooLarge,
    Eof,
    Idle,
}

/// Reads message data up to the lone `.` line, unstuffing dots; CRLF line ends.
async fn read_data(r: &mut (impl AsyncBufRead + Unpin), idle: Duration) -> std::io::Result<Data> {
    let mut data = Vec::new();
    let mut too_large = false;
    loop {
        let line = match read_line(r, MAX_DATA_LINE, idle).await? {
            Line::Ok(l) => l,
            Line::TooLong => {
                too_large = true;
                continue;
            }
            Line::Eof => return Ok(Data::Eof),
            Line::Idle => return Ok(Data::Idle),
        };
        if line == b"." {
            return Ok(if too_large { Data::TooLarge } else { Data::Ok(data) });
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        if data.len() + line.len() + 2 > MAX_MESSAGE {
            too_large = true;
        }
        if !too_large {
            data.extend_from_slice(line);
            data.extend_from_slice(b"\r\n");
        }
    }
}

/// Calls `deliver` once per grain of the transaction; the SMTP reply.
async fn deliver(rx: &MailReceiver, tx: Transaction, received: String, data: Vec<u8>) -> String {
    let mut by_grain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (g, addr) in tx.to {
        by_grain.entry(g).or_default().push(addr);
    }
    let mut full = received.into_bytes();
    full.extend_from_slice(&data);
    let mut failed = Vec::new();
    for (grain, envelope_to) in by_grain {
        let d = Delivery { envelope_from: tx.from.clone().unwrap_or_default(), envelope_to, data: full.clone() };
        if let Err(e) = (rx.deliver)(grain.clone(), d).await {
            failed.push(format!("{grain}: {e}"));
        }
    }
    if failed.is_empty() {
        "250 2.0.0 delivered".into()
    } else {
        format!("451 4.3.0 not delivered, try again later ({})", failed.join("; ").replace(['\r', '\n'], " "))
    }
}

/// `Received: from HELO ([ip]) by DOMAIN (granary) with ESMTP; DATE`.
fn received_field(helo: &str, peer: SocketAddr, domain: &str) -> String {
    let helo: String = helo.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    format!("Received: from {helo} ([{}])\r\n\tby {domain} (granary) with ESMTP;\r\n\t{}\r\n", peer.ip(), rfc5322_date(SystemTime::now()))
}

/// A date like `Sun, 29 Nov 2026 12:00:00 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(month - 1) as usize];
    format!("{weekday}, {day:02} {mon} {year} {:02}:{:02}:{:02} +0000", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `f`'s output, or `None` if `limit` passes first.
async fn timeout<T>(limit: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
    let f = std::pin::pin!(f);
    let timer = std::pin::pin!(Timer::after(limit));
    match futures::future::select(f, timer).await {
        futures::future::Either::Left((v, _)) => Some(v),
        futures::future::Either::Right(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        // Reference values from `date -u -d @SECONDS`.
        assert_eq!(rfc5322_date(UNIX_EPOCH + Duration::from_secs(1_795_954_210)), "Sun, 29 Nov 2026 12:10:10 +0000");
        assert_eq!(rfc5322_date(UNIX_EPOCH + Duration::from_secs(1_709_210_096)), "Thu, 29 Feb 2024 12:34:56 +0000");
    }

    #[test]
    fn recipients_must_be_grain_ids_at_our_domain() {
        assert_eq!(grain_of("Abc123@Mail.Test", "mail.test").as_deref(), Some("abc123"));
        for a in ["abc@other.test", "a.b@mail.test", "@mail.test", "a-b@mail.test", &format!("{}@mail.test", "a".repeat(65))] {
            assert_eq!(grain_of(a, "mail.test"), None, "{a}");
        }
    }

    #[test]
    fn paths_and_size_parameters_parse() {
        assert_eq!(path_arg("FROM:<a@b.c> SIZE=10", "FROM:"), Some(("a@b.c".into(), "SIZE=10")));
        assert_eq!(path_arg("from: <>", "FROM:"), Some((String::new(), "")));
        assert_eq!(path_arg("FROM:a@b.c", "FROM:"), None);
        assert_eq!(path_arg("TO:<a b@c>", "TO:"), None);
        assert_eq!(declared_size("BODY=8BITMIME size=99"), Some(99));
    }
}
