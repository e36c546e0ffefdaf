//! What the bridge is told at startup: its command line (`granary-bridge --help`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use hyper::header::HeaderName;

use crate::limits::DEFAULT_MAX_REQUEST_BODY;

/// The local capability API's port unless `--api-port` says otherwise.
pub const DEFAULT_API_PORT: u16 = 7870;

/// The usage text, printed for `--help` and after a command-line error.
pub const USAGE: &str = "\
usage: granary-bridge --port PORT [--api-path PATH] [--permission NAME]...
                      [--identity-header HEADER=FIELD]... [--startup-timeout SECONDS]
                      [--max-request-body BYTES] [--api-port PORT] [--maildir DIR]
                      [--capnp-port PORT] [--capnp-api-port PORT]
                      -- COMMAND [ARG]...

Runs COMMAND (the app) and serves its HTTP on 127.0.0.1:PORT to the platform as the grain's
MainView on fd 3. --permission gives the manifest's permission names in manifest order.
--identity-header fills a conventional reverse-proxy header; FIELD is one of user-id, handle,
display-name, permissions. The app's local capability API (claims, its HTTP proxy, mail) listens
on 127.0.0.1:--api-port (default 7870); mail delivered to the grain goes to the Maildir
--maildir (default /var/mail). --capnp-port is where the app serves Grain.AppObjects (the
manifest's [capnp] port; MainView.provide goes there); the app may restore its saved
capabilities over Cap'n Proto at 127.0.0.1:--capnp-api-port (default 7871).";

/// A piece of the session's identity that a conventional reverse-proxy header can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityField {
    /// `UserInfo.id`; absent for anonymous users.
    UserId,
    /// `UserInfo.handle`; absent for anonymous users.
    Handle,
    /// `UserInfo.displayName`, percent-encoded; absent for anonymous users.
    DisplayName,
    /// Comma-separated granted permission names; always present (may be empty).
    Permissions,
}

impl IdentityField {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "user-id" => Self::UserId,
            "handle" => Self::Handle,
            "display-name" => Self::DisplayName,
            "permissions" => Self::Permissions,
            _ => return None,
        })
    }
}

/// Everything the bridge needs to know about the app.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    /// The app listens on `127.0.0.1:port`.
    pub port: u16,
    /// Prefix put before the path of API sessions (`""` = none).
    pub api_path: String,
    /// Permission names, indexed like `SessionParams.permissions`.
    pub permissions: Vec<String>,
    /// Conventional headers to fill, e.g. `X-Remote-User` ← handle.
    pub identity_headers: Vec<(HeaderName, IdentityField)>,
    /// How long to wait for the app's port before giving up.
    pub startup_timeout: Duration,
    /// Largest request body forwarded to the app.
    pub max_request_body: u64,
    /// The local capability API listens on `127.0.0.1:api_port`.
    pub api_port: u16,
    /// The Maildir delivered mail is written to.
    pub maildir: PathBuf,
    /// The app serves `Grain.AppObjects` on `127.0.0.1:capnp_port`; 0 = it provides no raw
    /// interfaces.
    pub capnp_port: u16,
    /// The local Cap'n Proto endpoint (the supervisor's `GrainApi`) listens here.
    pub capnp_api_port: u16,
    /// The app's argv.
    pub command: Vec<OsString>,
}

impl BridgeConfig {
    /// A config for an app on `port` with no permissions, identity headers or command.
    pub fn new(port: u16) -> Self {
        Self {
            port,
            api_path: String::new(),
            permissions: Vec::new(),
            identity_headers: Vec::new(),
            startup_timeout: Duration::from_secs(60),
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            api_port: DEFAULT_API_PORT,
            maildir: PathBuf::from(crate::maildir::DEFAULT_MAILDIR),
            capnp_port: 0,
            capnp_api_port: crate::local_capnp::DEFAULT_CAPNP_API_PORT,
            command: Vec::new(),
        }
    }

    /// Parses the arguments after argv\[0\].
    pub fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Self, ConfigError> {
        let mut args = args.into_iter();
        let mut port = None;
        let mut c = Self::new(0);
        let mut timeout_secs = 60.0f64;
        while let Some(arg) = args.next() {
            let arg = arg.into_string().map_err(|a| ConfigError::NotUtf8(a.to_string_lossy().into()))?;
            if arg == "--" {
                c.command = args.by_ref().collect();
                break;
            }
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = || -> Result<String, ConfigError> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => args
                        .next()
                        .ok_or_else(|| ConfigError::MissingValue(flag.clone()))?
                        .into_string()
                        .map_err(|a| ConfigError::NotUtf8(a.to_string_lossy().into())),
                }
            };
            match flag.as_str() {
                "--port" => {
                    let v = value()?;
                    port = Some(v.parse().ok().filter(|p| *p != 0).ok_or(ConfigError::Invalid { flag, value: v })?);
                }
                "--api-path" => {
                    let v = value()?;
                    if !(v.is_empty() || v.starts_with('/')) || v.ends_with('/') {
                        return Err(ConfigError::Invalid { flag, value: v });
                    }
                    c.api_path = v;
                }
                "--permission" => c.permissions.push(value()?),
                "--identity-header" => {
                    let v = value()?;
                    let parsed = v.split_once('=').and_then(|(h, f)| {
                        let name = HeaderName::from_bytes(h.as_bytes()).ok().filter(|n| !crate::headers::is_reserved(n))?;
                        Some((name, IdentityField::parse(f)?))
                    });
                    c.identity_headers.push(parsed.ok_or(ConfigError::Invalid { flag, value: v })?);
                }
                "--startup-timeout" => {
                    let v = value()?;
                    timeout_secs = v
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s > 0.0)
                        .ok_or(ConfigError::Invalid { flag, value: v })?;
                }
                "--max-request-body" => {
                    let v = value()?;
                    c.max_request_body = v.parse().map_err(|_| ConfigError::Invalid { flag, value: v })?;
                }
                "--api-port" => {
                    let v = value()?;
                    c.api_port = v.parse().ok().filter(|p| *p != 0).ok_or(ConfigError::Invalid { flag, value: v })?;
                }
                "--maildir" => {
                    let v = value()?;
                    if !v.starts_with('/') {
                        return Err(ConfigError::Invalid { flag, value: v });
                    }
                    c.maildir = PathBuf::from(v);
                }
                "--capnp-port" | "--capnp-api-port" => {
                    let v = value()?;
                    let port = v.parse().ok().filter(|p| *p != 0).ok_or(ConfigError::Invalid { flag: flag.clone(), value: v })?;
                    if flag == "--capnp-port" {
                        c.capnp_port = port;
                    } else {
                        c.capnp_api_port = port;
                    }
                }
                _ => return Err(ConfigError::Unknown(arg)),
            }
        }
        c.port = port.ok_or(ConfigError::MissingPort)?;
        if c.port == c.api_port {
            return Err(ConfigError::PortClash(c.port));
        }
        for taken in [c.port, c.api_port, c.capnp_port] {
            if taken == c.capnp_api_port {
                return Err(ConfigError::CapnpPortClash(taken));
            }
        }
        if c.capnp_port != 0 && (c.capnp_port == c.port || c.capnp_port == c.api_port) {
            return Err(ConfigError::AppCapnpPortClash(c.capnp_port));
        }
        if c.command.is_empty() {
            return Err(ConfigError::MissingCommand);
        }
        c.startup_timeout = Duration::from_secs_f64(timeout_secs);
        Ok(c)
    }
}

/// A command line the bridge cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown argument `{0}`")]
    Unknown(String),
    #[error("`{0}` needs a value")]
    MissingValue(String),
    #[error("invalid value `{value}` for `{flag}`")]
    Invalid { flag: String, value: String },
    #[error("argument `{0}` is not UTF-8")]
    NotUtf8(String),
    #[error("`--port` is required")]
    MissingPort,
    #[error("the app's port {0} is also the local API's port: pass another --api-port (default 7870)")]
    PortClash(u16),
    #[error("port {0} is also the local Cap'n Proto endpoint's port: pass another --capnp-api-port (default 7871)")]
    CapnpPortClash(u16),
    #[error("--capnp-port {0} is also the app's HTTP port or the local API's port: the manifest's [capnp] port must differ from its [http] port and from 7870")]
    AppCapnpPortClash(u16),
    #[error("the app's command is missing after `--`")]
    MissingCommand,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_a_full_command_line() {
        let c = BridgeConfig::from_args(args(&[
            "--port", "8000", "--api-path=/api", "--permission", "read", "--permission", "write",
            "--identity-header", "X-Remote-User=handle", "--startup-timeout", "2.5", "--api-port", "7999", "--maildir", "/tmp/m", "--",
            "/app/server", "--port", "8000",
        ]))
        .unwrap();
        assert_eq!(c.port, 8000);
        assert_eq!(c.api_path, "/api");
        assert_eq!(c.permissions, ["read", "write"]);
        assert_eq!(c.identity_headers, [(HeaderName::from_static("x-remote-user"), IdentityField::Handle)]);
        assert_eq!(c.startup_timeout, Duration::from_millis(2500));
        assert_eq!(c.command, args(&["/app/server", "--port", "8000"]));
        assert_eq!((c.api_port, c.maildir.as_path()), (7999, std::path::Path::new("/tmp/m")));
        let defaults = BridgeConfig::from_args(args(&["--port", "1", "--", "x"])).unwrap();
        assert_eq!((defaults.api_port, defaults.maildir.as_path()), (7870, std::path::Path::new("/var/mail")));
        assert_eq!((defaults.capnp_port, defaults.capnp_api_port), (0, 7871));
        let capnp = BridgeConfig::from_args(args(&["--port", "1", "--capnp-port", "8001", "--capnp-api-port=7999", "--", "x"])).unwrap();
        assert_eq!((capnp.capnp_port, capnp.capnp_api_port), (8001, 7999));
    }

    #[test]
    fn rejects_bad_command_lines() {
        let err = |a: &[&str]| BridgeConfig::from_args(args(a)).unwrap_err().to_string();
        assert_eq!(err(&["--", "x"]), "`--port` is required");
        assert_eq!(err(&["--port", "80"]), "the app's command is missing after `--`");
        assert_eq!(err(&["--port", "0", "--", "x"]), "invalid value `0` for `--port`");
        assert_eq!(err(&["--port"]), "`--port` needs a value");
        assert_eq!(err(&["--bogus"]), "unknown argument `--bogus`");
        assert_eq!(
            err(&["--port", "1", "--identity-header", "X-User=email", "--", "x"]),
            "invalid value `X-User=email` for `--identity-header`"
        );
        assert_eq!(err(&["--port", "1", "--api-path", "api", "--", "x"]), "invalid value `api` for `--api-path`");
        assert_eq!(err(&["--port", "1", "--api-port", "0", "--", "x"]), "invalid value `0` for `--api-port`");
        assert_eq!(
            err(&["--port", "7870", "--", "x"]),
            "the app's port 7870 is also the local API's port: pass another --api-port (default 7870)"
        );
        assert_eq!(err(&["--port", "1", "--maildir", "mail", "--", "x"]), "invalid value `mail` for `--maildir`");
        assert_eq!(err(&["--port", "1", "--capnp-port", "0", "--", "x"]), "invalid value `0` for `--capnp-port`");
        assert_eq!(
            err(&["--port", "1", "--capnp-port", "7871", "--", "x"]),
            "port 7871 is also the local Cap'n Proto endpoint's port: pass another --capnp-api-port (default 7871)"
        );
        for clash in ["8000", "7870"] {
            assert_eq!(
                err(&["--port", "8000", "--capnp-port", clash, "--", "x"]),
                format!("--capnp-port {clash} is also the app's HTTP port or the local API's port: the manifest's [capnp] port must differ from its [http] port and from 7870")
            );
        }
        for reserved in ["X-Granary-User-Id=handle", "Host=handle", "X-Forwarded-Proto=user-id", "Connection=handle"] {
            assert_eq!(
                err(&["--port", "1", "--identity-header", reserved, "--", "x"]),
                format!("invalid value `{reserved}` for `--identity-header`")
            );
        }
    }
}
