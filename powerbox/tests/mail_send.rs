//! The send-mail driver against a real SMTP server (`support/smtp_relay.rs`: Debian's
//! aiosmtpd, one per test, so each test reads exactly the messages the relay accepted).

use std::net::TcpListener;
use std::rc::Rc;

use granary_powerbox::drivers::mail_send::{mail_sender, SendRate, SmtpRelay};
use granary_schema::mail_capnp::mail_sender;

#[path = "support/smtp_relay.rs"]
mod smtp_relay;
use smtp_relay::Relay;

/// The relay as the driver's setting.
fn setting(relay: &Relay) -> Rc<dyn Fn() -> Option<SmtpRelay>> {
    let port = relay.port;
    Rc::new(move || Some(SmtpRelay::plain("127.0.0.1", port)))
}

async fn send(sender: &mail_sender::Client, to: &[&str], message: &[u8]) -> Result<String, capnp::Error> {
    let mut req = sender.send_request();
    let mut list = req.get().init_to(to.len() as u32);
    for (i, t) in to.iter().enumerate() {
        list.set(i as u32, *t);
    }
    req.get().set_message(message);
    Ok(req.send().promise.await?.get()?.get_message_id()?.to_string()?)
}

const FORGED: &[u8] = b"From: The Bank <security@bank.example>\r\nSender: boss@corp.example\r\nSubject: hello\r\nTo: a@x.test\r\n\r\nfirst line\r\n.hidden line\r\n.\r\nlast line\r\n";

#[test]
fn a_message_arrives_with_the_forced_from_to_its_recipients() {
    let relay = Relay::start();
    async_io::block_on(async {
        let sender = mail_sender("abc123@mail.test".into(), setting(&relay), SendRate::new(30));
        let id = send(&sender, &["a@x.test", "b@y.test"], FORGED).await.unwrap();
        let msgs = relay.messages();
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert!(m.contains("From: abc123@mail.test\n"), "{m}");
        assert!(!m.contains("bank.example") && !m.contains("boss@corp.example"), "the forged From/Sender are gone: {m}");
        assert!(m.contains("X-MailFrom: abc123@mail.test\n") && m.contains("X-RcptTo: a@x.test, b@y.test\n"), "{m}");
        assert!(id.starts_with('<') && id.ends_with("@mail.test>") && m.contains(&format!("Message-ID: {id}\n")), "{id} {m}");
        assert!(m.ends_with("\n\nfirst line\n.hidden line\n.\nlast line\n"), "dot-stuffing round-trips: {m:?}");
    });
}

#[test]
fn too_many_recipients_and_no_relay_are_refused_before_sending() {
    let relay = Relay::start();
    async_io::block_on(async {
        let sender = mail_sender("abc123@mail.test".into(), setting(&relay), SendRate::new(30));
        let many: Vec<String> = (0..21).map(|i| format!("r{i}@x.test")).collect();
        let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
        let e = send(&sender, &many, FORGED).await.unwrap_err();
        assert!(e.to_string().contains("between 1 and 20 recipients, not 21"), "{e}");
        let e = send(&sender, &["not an address"], FORGED).await.unwrap_err();
        assert!(e.to_string().contains("invalid recipient address"), "{e}");
        let e = send(&sender, &["a@x.test"], &vec![b'a'; (10 << 20) + 1]).await.unwrap_err();
        assert!(e.to_string().contains("limit is 10485760 bytes"), "{e}");
        let injected = mail_sender("g@mail.test>\r\nRCPT TO:<victim@x.test".into(), setting(&relay), SendRate::new(30));
        let e = send(&injected, &["a@x.test"], FORGED).await.unwrap_err();
        assert!(e.to_string().contains("which is not a valid address"), "{e}");
        let none = mail_sender("abc123@mail.test".into(), Rc::new(|| None), SendRate::new(30));
        let e = send(&none, &["a@x.test"], FORGED).await.unwrap_err();
        assert!(e.to_string().contains("the administrator has not configured an SMTP relay (Admin → Settings)"), "{e}");
        assert!(relay.messages().is_empty());
    });
}

#[test]
fn the_31st_message_in_a_minute_is_overloaded_and_the_rate_is_per_grant() {
    let relay = Relay::start();
    async_io::block_on(async {
        let rate = SendRate::new(30);
        for i in 0..30 {
            // A new capability for the same grant shares its rate.
            let sender = mail_sender("abc123@mail.test".into(), setting(&relay), rate.clone());
            send(&sender, &["a@x.test"], format!("Subject: {i}\r\n\r\nbody\r\n").as_bytes()).await.unwrap();
        }
        let sender = mail_sender("abc123@mail.test".into(), setting(&relay), rate.clone());
        let e = send(&sender, &["a@x.test"], b"Subject: 31\r\n\r\nbody\r\n").await.unwrap_err();
        assert_eq!(e.kind, capnp::ErrorKind::Overloaded, "{e}");
        assert_eq!(relay.messages().len(), 30);
        let other = mail_sender("def456@mail.test".into(), setting(&relay), SendRate::new(30));
        send(&other, &["a@x.test"], b"Subject: other grant\r\n\r\nbody\r\n").await.unwrap();
        assert_eq!(relay.messages().len(), 31);
    });
}

#[test]
fn a_relay_that_is_down_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    async_io::block_on(async {
        let relay = Rc::new(move || Some(SmtpRelay::plain("127.0.0.1", port)));
        let sender = mail_sender("abc123@mail.test".into(), relay, SendRate::new(30));
        let e = send(&sender, &["a@x.test"], FORGED).await.unwrap_err();
        assert!(e.to_string().contains(&format!("talking to the SMTP relay 127.0.0.1:{port} failed")), "{e}");
    });
}
