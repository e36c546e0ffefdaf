//! Starting the app and waiting until it accepts connections on its port.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures::channel::oneshot;

use crate::config::BridgeConfig;

/// How often the port is tried while the app starts.
const POLL: Duration = Duration::from_millis(20);

/// The app could not be started or never became reachable.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start the app `{command}`: {error}")]
    Spawn { command: String, error: std::io::Error },
    #[error("the app exited ({status}) before accepting connections on {addr}")]
    ExitedEarly { status: String, addr: SocketAddr },
    #[error(
        "the app did not accept connections on {addr} within {secs} s; it must listen on \
         127.0.0.1 (not only ::1 or another address) at the port named in the manifest's [http] section"
    )]
    Timeout { addr: SocketAddr, secs: f64 },
}

/// What the app's environment gets so it finds the local API and sends HTTP through it:
/// `GRANARY_API`, `HTTP_PROXY` and `http_proxy` = `http://127.0.0.1:PORT`, and `NO_PROXY` /
/// `no_proxy` = loopback (the app's own and the API's addresses are not proxied).
pub fn api_environment(api_port: u16) -> Vec<(&'static str, String)> {
    let url = format!("http://127.0.0.1:{api_port}");
    let loopback = "127.0.0.1,localhost,::1".to_string();
    vec![
        ("GRANARY_API", url.clone()),
        ("HTTP_PROXY", url.clone()),
        ("http_proxy", url),
        ("NO_PROXY", loopback.clone()),
        ("no_proxy", loopback),
    ]
}

/// The running app.
pub struct App {
    /// Its process id.
    pub pid: u32,
    /// Resolves when it exits (a thread waits for it).
    pub exited: oneshot::Receiver<std::io::Result<ExitStatus>>,
}

impl App {
    /// Starts `config.command` with the bridge's environment plus [`api_environment`], stdin
    /// from /dev/null, and
    /// stdout/stderr shared with the bridge (the grain log).
    pub fn spawn(config: &BridgeConfig) -> Result<Self, LaunchError> {
        let command = config.command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
        let (program, args) = config
            .command
            .split_first()
            .ok_or_else(|| LaunchError::Spawn { command: command.clone(), error: std::io::ErrorKind::InvalidInput.into() })?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .envs(api_environment(config.api_port))
            .spawn()
            .map_err(|error| LaunchError::Spawn { command, error })?;
        let pid = child.id();
        let (tx, exited) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        Ok(Self { pid, exited })
    }

    /// Waits until 127.0.0.1:`port` accepts a connection, the app exits, or `timeout` passes.
    pub async fn wait_for_port(&mut self, port: u16, timeout: Duration) -> Result<(), LaunchError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.exited.try_recv() {
                let status = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("wait failed: {e}"),
                };
                return Err(LaunchError::ExitedEarly { status, addr });
            }
            if Async::<TcpStream>::connect(addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::Timeout { addr, secs: timeout.as_secs_f64() });
            }
            Timer::after(POLL).await;
        }
    }

    /// Sends SIGTERM to the app if it has not exited yet.
    pub fn terminate(&mut self) {
        if !matches!(self.exited.try_recv(), Ok(None)) {
            return; // already exited and reaped: the pid may belong to someone else now
        }
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
    }
}
