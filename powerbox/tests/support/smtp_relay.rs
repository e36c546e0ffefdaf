//! A real SMTP relay for tests: Debian's `python3-aiosmtpd` (installed by `scripts/deps.sh
//! test`), started on a free loopback port with its Maildir handler, so a test reads exactly
//! the messages the relay accepted. Shared by the powerbox crate's driver tests and the
//! shell's end-to-end tests (`#[path]`-included there).

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// An aiosmtpd process writing what it receives to a Maildir; killed on drop.
pub struct Relay {
    child: std::process::Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Relay {
    pub fn start() -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("maildir"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("python3-aiosmtpd is needed: run scripts/deps.sh test");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Relay { child, port, dir }
    }

    /// The messages received so far, as text.
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("maildir/new");
        let Ok(entries) = std::fs::read_dir(new) else { return Vec::new() };
        entries.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect()
    }

    /// Waits (20 s at most) until at least `n` messages arrived; returns them.
    #[allow(dead_code)]
    pub fn wait_for_messages(&self, n: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "the relay received {} messages", got.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
