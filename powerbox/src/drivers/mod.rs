//! The built-in drivers: capabilities the server itself implements, reaching outside the
//! platform on a grain's behalf. Each one is the only way its grain reaches that outside thing,
//! so each checks what it is asked to do against exactly what was granted.
//!
//! - [`http`]: a `WebSession` to one HTTP origin under one path prefix ([`http::http_session`]).
//! - [`mail_send`]: a `MailSender` that sends as one address through the administrator's SMTP
//!   relay ([`mail_send::mail_sender`]).
//! - [`smtp_client`]: how [`mail_send`] talks to the relay (STARTTLS/TLS, AUTH).
//! - [`mail_receive`]: the SMTP listener that delivers mail to grains
//!   ([`mail_receive::serve_smtp`]).
//! - [`ssrf`]: the address check every outgoing connection goes through ([`ssrf::NetPolicy`]).
//!
//! May touch: the outside network, only through addresses [`ssrf::NetPolicy::resolve_checked`]
//! returned, the administrator's SMTP relay, and the SMTP listener it is given. Must never: connect to a private, loopback or
//! link-local address the administrator did not allow, or send mail as an address that was not
//! granted.

pub mod http;
pub mod mail_receive;
pub mod mail_send;
pub mod smtp_client;
pub mod ssrf;
mod tls;

/// Why a driver refused or failed. Every message says what the user or administrator can do.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot resolve the host {host}: {why} (check the name; the administrator can pin it with `granary serve --resolve {host}=IP`)")]
    Resolve { host: String, why: String },
    #[error("{host} resolves to {addr}, a {kind} address the server refuses to reach on a grain's behalf (an administrator can allow this host in Admin → Settings)")]
    PrivateAddress { host: String, addr: std::net::IpAddr, kind: &'static str },
    #[error("invalid origin {origin:?}: {why} (write it as http://host[:port] or https://host[:port], with no path)")]
    BadOrigin { origin: String, why: String },
    #[error("an extra root certificate is not usable: {0} (give DER or PEM X.509 CA certificates)")]
    BadRootCertificate(String),
    #[error("cannot connect to {addr}: {why}")]
    Connect { addr: std::net::SocketAddr, why: String },
    #[error("the administrator has not configured an SMTP relay (Admin → Settings)")]
    NoRelay,
    #[error("this capability sends as {0:?}, which is not a valid address; ask the user to grant a valid one")]
    BadSender(String),
    #[error("invalid recipient address {0:?}: expected one like name@example.com")]
    BadRecipient(String),
    #[error("a message needs between 1 and {max} recipients, not {count}")]
    RecipientCount { count: usize, max: usize },
    #[error("the message is {size} bytes; the limit is {max} bytes")]
    MessageTooLarge { size: usize, max: usize },
    #[error("the message is not RFC 5322: {0}")]
    BadMessage(String),
    #[error("the SMTP relay {relay} refused the message: {reply}")]
    RelayRefused { relay: String, reply: String },
    #[error("talking to the SMTP relay {relay} failed: {why} (check the relay setting in Admin → Settings)")]
    RelayIo { relay: String, why: String },
}

impl From<DriverError> for capnp::Error {
    fn from(e: DriverError) -> Self {
        capnp::Error::failed(e.to_string())
    }
}
