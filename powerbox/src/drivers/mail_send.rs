//! The send-mail driver: a `MailSender` that sends as one granted address through the
//! administrator's SMTP relay.
//!
//! Per `send`: 1–[`MAX_RECIPIENTS`] plausible addresses, at most [`MAX_MESSAGE`] bytes, at most
//! [`SendRate`]'s messages a minute (beyond: `overloaded`). Every `From:` and `Sender:` field
//! (with its folded continuation lines) is removed and `From: <address>` prepended; a
//! `Message-ID` is added if there is none, and returned either way. The relay is read at each
//! send (it is a live setting) and spoken to with the small SMTP client of
//! [`super::smtp_client`] (STARTTLS or TLS, AUTH PLAIN or LOGIN). The blocking socket work
//! runs on `blocking`'s thread pool, never on the RPC thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use granary_schema::mail_capnp::mail_sender;

use super::DriverError;

/// Most recipients of one message.
pub const MAX_RECIPIENTS: usize = 20;
/// Largest message, in bytes.
pub const MAX_MESSAGE: usize = 10 << 20;
/// Messages a minute a grant may send by default.
pub const DEFAULT_PER_MINUTE: usize = 30;

pub use super::smtp_client::{RelayLogin, RelaySecurity, SmtpRelay};

/// A sliding one-minute window of sends. Keep one per grant and pass it to every
/// [`mail_sender`] made for that grant, so restoring the grant again does not reset it.
pub struct SendRate {
    per_minute: usize,
    sent: RefCell<VecDeque<Instant>>,
}

impl SendRate {
    /// A limit of `per_minute` messages in any 60 seconds.
    pub fn new(per_minute: usize) -> Rc<Self> {
        Rc::new(Self { per_minute, sent: RefCell::new(VecDeque::new()) })
    }

    /// Counts one send now, or refuses if the window is full.
    fn take(&self) -> bool {
        let now = Instant::now();
        let mut sent = self.sent.borrow_mut();
        while sent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
            sent.pop_front();
        }
        if sent.len() >= self.per_minute {
            return false;
        }
        sent.push_back(now);
        true
    }
}

/// A `MailSender` sending as `address` through the relay `relay()` names at each send.
pub fn mail_sender(address: String, relay: Rc<dyn Fn() -> Option<SmtpRelay>>, rate: Rc<SendRate>) -> mail_sender::Client {
    capnp_rpc::new_client(MailSenderImpl { address, relay, rate })
}

struct MailSenderImpl {
    address: String,
    relay: Rc<dyn Fn() -> Option<SmtpRelay>>,
    rate: Rc<SendRate>,
}

impl mail_sender::Server for MailSenderImpl {
    async fn send(
        self: capnp::capability::Rc<Self>,
        params: mail_sender::SendParams,
        mut results: mail_sender::SendResults,
    ) -> Result<(), capnp::Error> {
        let p = params.get()?;
        let to = p.get_to()?.iter().map(|t| Ok(t?.to_string()?)).collect::<capnp::Result<Vec<String>>>()?;
        let message = p.get_message()?;
        let relay = (self.relay)().ok_or(DriverError::NoRelay)?;
        if !plausible_address(&self.address) {
            // It goes into MAIL FROM and From: as is, so it must not carry anything else.
            return Err(DriverError::BadSender(self.address.clone()).into());
        }
        check_recipients(&to)?;
        if message.len() > MAX_MESSAGE {
            return Err(DriverError::MessageTooLarge { size: message.len(), max: MAX_MESSAGE }.into());
        }
        let (data, message_id) = rewrite(message, &self.address)?;
        // Counted when the relay is about to be contacted, whether or not it accepts.
        if !self.rate.take() {
            return Err(capnp::Error::overloaded(format!(
                "{} has sent {} messages in the last minute, its limit; try again in a minute",
                self.address, self.rate.per_minute
            )));
        }
        let from = self.address.clone();
        blocking::unblock(move || super::smtp_client::send(&relay, &from, &to, &data)).await?;
        results.get().set_message_id(&message_id);
        Ok(())
    }
}

/// Refuses a recipient list that is empty, too long, or holds an implausible address.
pub fn check_recipients(to: &[String]) -> Result<(), DriverError> {
    if to.is_empty() || to.len() > MAX_RECIPIENTS {
        return Err(DriverError::RecipientCount { count: to.len(), max: MAX_RECIPIENTS });
    }
    for a in to {
        if !plausible_address(a) {
            return Err(DriverError::BadRecipient(a.clone()));
        }
    }
    Ok(())
}

/// `local@domain` with a dot-atom-ish local part and a host name of letters, digits, `-`, `.`.
pub fn plausible_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else { return false };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let domain_ok = domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    local_ok && domain_ok
}

/// The message as sent: CRLF line ends, `From`/`Sender` replaced by `From: <address>`, a
/// `Message-ID` added if missing; and that Message-ID.
pub fn rewrite(message: &[u8], address: &str) -> Result<(Vec<u8>, String), DriverError> {
    let lines: Vec<&[u8]> = message.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect();
    let blank = lines.iter().position(|l| l.is_empty()).unwrap_or(lines.len());
    let (head, body) = lines.split_at(blank);
    let mut out = format!("From: {address}\r\n").into_bytes();
    let mut message_id = None;
    let mut dropping = false;
    for (i, line) in head.iter().enumerate() {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if i == 0 {
                return Err(DriverError::BadMessage("the first header line is a continuation line".into()));
            }
            if !dropping {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
            continue;
        }
        let colon = line.iter().position(|b| *b == b':').ok_or_else(|| {
            DriverError::BadMessage(format!("header line {} has no colon (separate the body with an empty line)", i + 1))
        })?;
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_ascii_lowercase();
        dropping = name == "from" || name == "sender";
        if name == "message-id" {
            let mut v = line[colon + 1..].to_vec();
            for cont in head[i + 1..].iter().take_while(|l| l.starts_with(b" ") || l.starts_with(b"\t")) {
                v.extend_from_slice(cont);
            }
            message_id = Some(String::from_utf8_lossy(&v).trim().to_string());
        }
        if !dropping {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    let message_id = match message_id {
        Some(id) => id,
        None => {
            let mut r = [0u8; 16];
            getrandom::fill(&mut r).map_err(|e| DriverError::BadMessage(format!("no randomness for a Message-ID: {e}")))?;
            let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
            let domain = address.rsplit_once('@').map_or("granary.invalid", |(_, d)| d);
            let id = format!("<{hex}@{domain}>");
            out.extend_from_slice(format!("Message-ID: {id}\r\n").as_bytes());
            id
        }
    };
    out.extend_from_slice(b"\r\n");
    for (i, line) in body.iter().skip(1).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    Ok((out, message_id))
}

/// Sends one message as `from` through `relay` now (blocking; for the server's own mail, such
/// as address verification): the same checks and header rewriting as a `MailSender`, no rate.
/// Returns the Message-ID.
pub fn send_now(relay: &SmtpRelay, from: &str, to: &[String], message: &[u8]) -> Result<String, DriverError> {
    if !plausible_address(from) {
        return Err(DriverError::BadSender(from.to_owned()));
    }
    check_recipients(to)?;
    if message.len() > MAX_MESSAGE {
        return Err(DriverError::MessageTooLarge { size: message.len(), max: MAX_MESSAGE });
    }
    let (data, message_id) = rewrite(message, from)?;
    super::smtp_client::send(relay, from, to, &data)?;
    Ok(message_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_and_sender_are_replaced_including_folded_lines() {
        let m = b"From: Mallory\n <boss@bank.com>\nSubject: hi\nsender: x@y.z\nFROM:again@x.y\nTo: a@b.c\n\nbody\nFrom: in the body\n";
        let (out, id) = rewrite(m, "grain@mail.test").unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("From: grain@mail.test\r\nSubject: hi\r\nTo: a@b.c\r\nMessage-ID: <"), "{out}");
        assert!(!out.contains("boss@bank.com") && !out.contains("x@y.z") && !out.contains("again@"), "{out}");
        assert!(out.ends_with("\r\n\r\nbody\r\nFrom: in the body\r\n"), "{out}");
        assert!(id.starts_with('<') && id.ends_with("@mail.test>") && out.contains(&format!("Message-ID: {id}\r\n")));
    }

    #[test]
    fn an_existing_message_id_is_kept_and_returned() {
        let (out, id) = rewrite(b"Message-ID:\r\n <abc@x.y>\r\n\r\nhi", "g@m.test").unwrap();
        assert_eq!(id, "<abc@x.y>");
        assert_eq!(String::from_utf8(out).unwrap().matches("Message-ID").count(), 1);
    }

    #[test]
    fn header_without_colon_is_refused() {
        assert!(matches!(rewrite(b"Subject: x\nnot a header\n\nbody", "g@m.test"), Err(DriverError::BadMessage(_))));
    }

    #[test]
    fn recipients_are_checked() {
        for a in ["a@b.co", "first.last+tag@sub.example.org", "x_y@a-b.io"] {
            assert!(plausible_address(a), "{a}");
        }
        for a in ["", "a", "@b.co", "a@", "a@b", "a b@c.de", "a@b..c", "a@-b.co", ".a@b.co", "a..b@c.de", "<a@b.co>", "a@b.co\r\nRCPT TO:<x@y.z>"] {
            assert!(!plausible_address(a), "{a}");
        }
        assert!(matches!(check_recipients(&[]), Err(DriverError::RecipientCount { .. })));
        let many: Vec<String> = (0..21).map(|i| format!("r{i}@x.test")).collect();
        assert!(matches!(check_recipients(&many), Err(DriverError::RecipientCount { count: 21, .. })));
        assert!(check_recipients(&many[..20]).is_ok());
    }

    #[test]
    fn rate_window_counts_to_the_limit() {
        let r = SendRate::new(3);
        assert!(r.take() && r.take() && r.take());
        assert!(!r.take());
    }
}
