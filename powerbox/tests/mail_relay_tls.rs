//! The send-mail driver against a relay that wants TLS and a login, as mail providers'
//! submission ports do: a real aiosmtpd (`support/secure_relay.py`) with STARTTLS required
//! (or implicit TLS) and AUTH for one account, its certificate from a test CA made with the
//! `openssl` command.

use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use granary_powerbox::drivers::mail_send::{mail_sender, RelayLogin, RelaySecurity, SendRate, SmtpRelay};
use granary_schema::mail_capnp::mail_sender;

const USER: &str = "relay-user";
const PASSWORD: &str = "correct horse battery";

/// A test CA and a relay certificate for 127.0.0.1 and `relay.test`: (dir with ca.pem,
/// leaf.pem, leaf.key; the CA's DER).
fn test_pki() -> (tempfile::TempDir, Vec<u8>) {
    use futures_rustls::pki_types::pem::PemObject;
    use futures_rustls::pki_types::CertificateDer;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg("-ec")
        .arg(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=granary-test-ca 2>/dev/null
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout leaf.key -out leaf.csr -subj /CN=relay.test 2>/dev/null
             printf 'subjectAltName=IP:127.0.0.1,DNS:relay.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
             openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 -extfile ext 2>/dev/null",
        )
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    let ca = CertificateDer::from_pem_file(dir.path().join("ca.pem")).unwrap().to_vec();
    (dir, ca)
}

/// The relay process; killed on drop.
struct SecureRelay {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl SecureRelay {
    fn start(mode: &str, pki: &std::path::Path) -> SecureRelay {
        let maildir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/secure_relay.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args([mode, &port.to_string()])
            .arg(pki.join("leaf.pem"))
            .arg(pki.join("leaf.key"))
            .arg(maildir.path().join("maildir"))
            .args([USER, PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its tracebacks for the handshakes these tests make fail on purpose are noise.
            .stderr(Stdio::null())
            .spawn()
            .expect("python3-aiosmtpd is needed: run scripts/deps.sh test");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the relay did not start");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "the relay does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        SecureRelay { child, port, maildir }
    }

    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.path().join("maildir/new")) else { return Vec::new() };
        entries.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect()
    }
}

impl Drop for SecureRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(relay: SmtpRelay, subject: &str) -> Result<String, capnp::Error> {
    let sender: mail_sender::Client = mail_sender("abc123@mail.test".into(), Rc::new(move || Some(relay.clone())), SendRate::new(30));
    let mut req = sender.send_request();
    let mut to = req.get().init_to(1);
    to.set(0, "bob@example.test");
    req.get().set_message(format!("From: someone@else.test\r\nSubject: {subject}\r\n\r\nhello\r\n").as_bytes());
    let reply = req.send().promise.await?;
    Ok(reply.get()?.get_message_id()?.to_string()?)
}

fn relay(port: u16, security: RelaySecurity, password: &str, ca: &[u8]) -> SmtpRelay {
    SmtpRelay {
        host: "127.0.0.1".into(),
        port,
        security,
        login: Some(RelayLogin { username: USER.into(), password: password.into() }),
        extra_roots: vec![ca.to_vec()],
    }
}

#[test]
fn starttls_with_a_login_delivers_and_every_misconfiguration_is_a_clear_error() {
    let (pki, ca) = test_pki();
    let r = SecureRelay::start("starttls", pki.path());
    async_io::block_on(async {
        send(relay(r.port, RelaySecurity::StartTls, PASSWORD, &ca), "over starttls").await.unwrap();
        let got = r.messages();
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("Subject: over starttls") && got[0].contains("From: abc123@mail.test"), "{}", got[0]);

        // A wrong password: the relay's refusal, naming the step, never the secret.
        let e = send(relay(r.port, RelaySecurity::StartTls, "wrong", &ca), "x").await.unwrap_err().to_string();
        assert!(e.contains("refused") && e.contains("535") && e.contains("AUTH PLAIN"), "{e}");
        assert!(!e.contains("wrong") && !e.contains("AHJlbGF5"), "the error must not carry the credentials: {e}");

        // The CA not trusted: the handshake fails and says so.
        let e = send(relay(r.port, RelaySecurity::StartTls, PASSWORD, &[]).tap(|x| x.extra_roots.clear()), "x").await.unwrap_err().to_string();
        assert!(e.contains("TLS handshake failed") && e.to_lowercase().contains("certificate"), "{e}");

        // A login without TLS to a relay that is not on this machine is refused before
        // connecting; on loopback it is tried, and this relay offers no login in clear.
        let mut remote = relay(r.port, RelaySecurity::None, PASSWORD, &ca);
        remote.host = "relay.test".into();
        let e = send(remote, "x").await.unwrap_err().to_string();
        assert!(e.contains("needs TLS or STARTTLS"), "{e}");
        let e = send(relay(r.port, RelaySecurity::None, PASSWORD, &ca), "x").await.unwrap_err().to_string();
        assert!(e.contains("offers no AUTH PLAIN or LOGIN"), "{e}");

        // Implicit TLS against a STARTTLS port: a clear failure, not a hang.
        let e = send(relay(r.port, RelaySecurity::Tls, PASSWORD, &ca), "x").await.unwrap_err().to_string();
        assert!(e.contains("TLS handshake failed"), "{e}");
        assert_eq!(r.messages().len(), 1, "nothing else was delivered");
    });
}

#[test]
fn implicit_tls_with_a_login_delivers() {
    let (pki, ca) = test_pki();
    let r = SecureRelay::start("tls", pki.path());
    async_io::block_on(async {
        send(relay(r.port, RelaySecurity::Tls, PASSWORD, &ca), "over tls").await.unwrap();
        let got = r.messages();
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("Subject: over tls"), "{}", got[0]);
        let e = send(relay(r.port, RelaySecurity::Tls, "wrong", &ca), "x").await.unwrap_err().to_string();
        assert!(e.contains("535"), "{e}");
        assert_eq!(r.messages().len(), 1);
    });
}

trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl Tap for SmtpRelay {}
