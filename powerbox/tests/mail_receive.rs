//! The SMTP listener on a real loopback socket, spoken to by a plain blocking TCP client (so
//! the bytes on the wire, pipelining included, are exactly what the test writes).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_executor::LocalExecutor;
use async_io::Async;
use futures::FutureExt;
use granary_powerbox::drivers::mail_receive::{serve_smtp, DeliverError, Delivery, MailReceiver};

type Delivered = Arc<Mutex<Vec<(String, Delivery)>>>;

/// Starts the listener for `mail.test` on its own thread. Grains `g1`, `g2` and `broken`
/// exist; delivery to `broken` fails.
fn start(idle: Duration) -> (u16, Delivered) {
    start_with(idle, Arc::new(Mutex::new("mail.test".into())))
}

/// [`start`] with the mail domain read from `domain` for each connection.
fn start_with(idle: Duration, domain: Arc<Mutex<String>>) -> (u16, Delivered) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let delivered: Delivered = Arc::default();
    let d = delivered.clone();
    std::thread::spawn(move || {
        let ex = Rc::new(LocalExecutor::new());
        let receiver = Rc::new(MailReceiver {
            domain: Rc::new(move || domain.lock().unwrap().clone()),
            accepts: Rc::new(|g: &str| ["g1", "g2", "broken"].contains(&g)),
            deliver: Rc::new(move |grain: String, delivery: Delivery| {
                let d = d.clone();
                async move {
                    if grain == "broken" {
                        return Err(DeliverError::Failed("its supervisor is restarting".into()));
                    }
                    d.lock().unwrap().push((grain, delivery));
                    Ok(())
                }
                .boxed_local()
            }),
            idle_timeout: idle,
        });
        let listener = Async::new(listener).unwrap();
        async_io::block_on(ex.run(serve_smtp(listener, receiver, ex.clone())));
    });
    (port, delivered)
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        Self::connect_to(port, "mail.test")
    }

    /// Connects and expects the greeting of `domain`.
    fn connect_to(port: u16, domain: &str) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Client { w: s.try_clone().unwrap(), r: BufReader::new(s) };
        let greeting = c.reply();
        assert!(greeting.starts_with(&format!("220 {domain} ")), "{greeting}");
        c
    }

    /// One whole reply (all lines of a multi-line one).
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            assert!(self.r.read_line(&mut line).unwrap() > 0, "connection closed; so far: {all:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    fn cmd(&mut self, line: &str) -> String {
        self.raw(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    fn code(&mut self, line: &str) -> u16 {
        self.cmd(line)[..3].parse().unwrap()
    }
}

#[test]
fn a_message_to_two_grains_reaches_each_intact() {
    let (port, delivered) = start(Duration::from_secs(60));
    let mut c = Client::connect(port);
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.starts_with("250-mail.test\r\n") && ehlo.contains("250-PIPELINING\r\n") && ehlo.contains("SIZE 10485760"), "{ehlo}");
    assert_eq!(c.code("MAIL FROM:<someone@ext.test> BODY=8BITMIME"), 250);
    assert_eq!(c.code("RCPT TO:<G1@MAIL.test>"), 250);
    assert_eq!(c.code("RCPT TO:<g2@mail.test>"), 250);
    assert_eq!(c.code("RCPT TO:<g1@mail.test>"), 250);
    assert_eq!(c.code("DATA"), 354);
    c.raw(b"Subject: hi\r\n\r\nline one\r\n..starts with a dot\r\n...\r\n.\r\n");
    assert_eq!(&c.reply()[..3], "250");
    assert_eq!(c.code("QUIT"), 221);
    let d = delivered.lock().unwrap();
    assert_eq!(d.len(), 2, "one delivery per grain");
    assert_eq!((d[0].0.as_str(), d[1].0.as_str()), ("g1", "g2"));
    assert_eq!(d[0].1.envelope_to, ["G1@MAIL.test", "g1@mail.test"]);
    assert_eq!(d[1].1.envelope_to, ["g2@mail.test"]);
    for (_, m) in d.iter() {
        assert_eq!(m.envelope_from, "someone@ext.test");
        let text = String::from_utf8(m.data.clone()).unwrap();
        assert!(text.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby mail.test (granary) with ESMTP;\r\n\t"), "{text}");
        assert!(text.ends_with(" +0000\r\nSubject: hi\r\n\r\nline one\r\n.starts with a dot\r\n..\r\n"), "{text:?}");
    }
}

#[test]
fn unknown_recipients_get_550_and_the_transaction_goes_on() {
    let (port, delivered) = start(Duration::from_secs(60));
    let mut c = Client::connect(port);
    assert_eq!(c.code("HELO client.test"), 250);
    assert_eq!(c.code("MAIL FROM:<>"), 250);
    for rcpt in ["nosuch@mail.test", "g1@other.test", "g.1@mail.test", "g1"] {
        let code = c.code(&format!("RCPT TO:<{rcpt}>"));
        assert_eq!(code, 550, "{rcpt}");
    }
    assert_eq!(c.code("RCPT TO:g1@mail.test"), 501, "the path needs angle brackets");
    assert_eq!(c.code("DATA"), 554, "no valid recipient yet");
    assert_eq!(c.code("RCPT TO:<g1@mail.test>"), 250);
    assert_eq!(c.code("DATA"), 354);
    c.raw(b"Subject: bounce\r\n\r\nx\r\n.\r\n");
    assert_eq!(&c.reply()[..3], "250");
    let d = delivered.lock().unwrap();
    assert_eq!((d.len(), d[0].1.envelope_from.as_str()), (1, ""));
}

#[test]
fn oversized_messages_get_552_and_the_connection_stays_usable() {
    let (port, delivered) = start(Duration::from_secs(60));
    let mut c = Client::connect(port);
    assert_eq!(c.code("EHLO client.test"), 250);
    assert_eq!(c.code("MAIL FROM:<a@ext.test> SIZE=20000000"), 552, "a declared size over the limit");
    assert_eq!(c.code("MAIL FROM:<a@ext.test>"), 250);
    assert_eq!(c.code("RCPT TO:<g1@mail.test>"), 250);
    assert_eq!(c.code("DATA"), 354);
    let line = [b'x'; 998];
    for _ in 0..(11 << 20) / 1000 {
        c.raw(&line);
        c.raw(b"\r\n");
    }
    c.raw(b".\r\n");
    assert_eq!(&c.reply()[..3], "552");
    assert_eq!(c.code("MAIL FROM:<a@ext.test>"), 250);
    assert_eq!(c.code("RCPT TO:<g1@mail.test>"), 250);
    assert_eq!(c.code("DATA"), 354);
    c.raw(&vec![b'y'; 70 * 1024]);
    c.raw(b"\r\n.\r\n");
    assert_eq!(&c.reply()[..3], "552", "a line over 64 KiB");
    assert_eq!(c.code("NOOP"), 250);
    assert!(delivered.lock().unwrap().is_empty());
}

#[test]
fn a_grain_that_cannot_take_it_gets_451() {
    let (port, _) = start(Duration::from_secs(60));
    let mut c = Client::connect(port);
    assert_eq!(c.code("EHLO client.test"), 250);
    assert_eq!(c.code("MAIL FROM:<a@ext.test>"), 250);
    assert_eq!(c.code("RCPT TO:<broken@mail.test>"), 250);
    assert_eq!(c.code("DATA"), 354);
    c.raw(b"Subject: x\r\n\r\nx\r\n.\r\n");
    let r = c.reply();
    assert!(r.starts_with("451 ") && r.contains("its supervisor is restarting"), "{r}");
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let (port, delivered) = start(Duration::from_secs(60));
    let mut c = Client::connect(port);
    c.raw(b"EHLO client.test\r\nMAIL FROM:<a@ext.test>\r\nRCPT TO:<g1@mail.test>\r\nRCPT TO:<zz@mail.test>\r\nRCPT TO:<g2@mail.test>\r\nDATA\r\n");
    let codes: Vec<String> = (0..6).map(|_| c.reply()[..3].to_string()).collect();
    assert_eq!(codes, ["250", "250", "250", "550", "250", "354"]);
    c.raw(b"Subject: p\r\n\r\nbody\r\n.\r\nRSET\r\nQUIT\r\n");
    let codes: Vec<String> = (0..3).map(|_| c.reply()[..3].to_string()).collect();
    assert_eq!(codes, ["250", "250", "221"]);
    assert_eq!(delivered.lock().unwrap().len(), 2);
}

#[test]
fn garbage_gets_500_and_the_session_goes_on() {
    let (port, _) = start(Duration::from_secs(60));
    let mut c = Client::connect(port);
    assert_eq!(c.code("MAIL FROM:<a@ext.test>"), 503, "HELO first");
    assert_eq!(c.code("HELLO there"), 500);
    assert_eq!(c.code("\u{1}\u{2}garbage"), 500);
    assert_eq!(c.code(&"A".repeat(2000)), 500, "an over-long command line");
    assert_eq!(c.code("STARTTLS"), 500);
    assert_eq!(c.code("VRFY g1"), 252);
    assert_eq!(c.code("EHLO"), 501);
    assert_eq!(c.code("EHLO client.test"), 250);
    assert_eq!(c.code("RCPT TO:<g1@mail.test>"), 503, "MAIL first");
    assert_eq!(c.code("MAIL FROM:<a@ext.test>"), 250);
    assert_eq!(c.code("MAIL FROM:<a@ext.test>"), 503, "one transaction at a time");
    assert_eq!(c.code("RSET"), 250);
    assert_eq!(c.code("MAIL FROM:<a@ext.test>"), 250);
    assert_eq!(c.code("noop"), 250);
}

#[test]
fn at_most_100_recipients() {
    let (port, _) = start(Duration::from_secs(60));
    let mut c = Client::connect(port);
    assert_eq!(c.code("EHLO client.test"), 250);
    assert_eq!(c.code("MAIL FROM:<a@ext.test>"), 250);
    for _ in 0..100 {
        assert_eq!(c.code("RCPT TO:<g1@mail.test>"), 250);
    }
    assert_eq!(c.code("RCPT TO:<g2@mail.test>"), 452);
}

#[test]
fn an_idle_connection_is_closed_with_421() {
    let (port, _) = start(Duration::from_millis(300));
    let mut c = Client::connect(port);
    assert_eq!(c.code("EHLO client.test"), 250);
    std::thread::sleep(Duration::from_millis(600));
    assert!(c.reply().starts_with("421 "));
    let mut rest = Vec::new();
    assert_eq!(c.r.read_to_end(&mut rest).unwrap(), 0, "then it hangs up");
}

#[test]
fn a_new_mail_domain_applies_to_the_next_connection() {
    let domain = Arc::new(Mutex::new("mail.test".to_owned()));
    let (port, delivered) = start_with(Duration::from_secs(60), domain.clone());
    let mut before = Client::connect(port);
    *domain.lock().unwrap() = "new.test".into();
    // The connection already open keeps the domain it greeted with.
    assert_eq!(before.code("HELO client.test"), 250);
    assert_eq!(before.code("MAIL FROM:<a@ext.test>"), 250);
    assert_eq!(before.code("RCPT TO:<g1@mail.test>"), 250);
    let mut c = Client::connect_to(port, "new.test");
    assert_eq!(c.code("HELO client.test"), 250);
    assert_eq!(c.code("MAIL FROM:<a@ext.test>"), 250);
    let refused = c.cmd("RCPT TO:<g1@mail.test>");
    assert!(refused.starts_with("550") && refused.contains("<grain>@new.test"), "{refused}");
    assert_eq!(c.code("RCPT TO:<g2@new.test>"), 250);
    assert_eq!(c.code("DATA"), 354);
    c.raw(b"Subject: moved\r\n\r\nhello\r\n.\r\n");
    assert_eq!(&c.reply()[..3], "250");
    let got = delivered.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "g2");
    assert_eq!(got[0].1.envelope_to, ["g2@new.test"]);
}
