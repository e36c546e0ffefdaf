//! Runs inside a grain (see tests/tests/runtimes.rs): serves HTTP on 127.0.0.1:$PORT and fetches
//! from itself, writes /var/rust.txt and reads it back, runs itself as a child process, then
//! prints one `RESULT` line with what each step actually returned. Any failure panics (exit 101).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

fn main() {
    let nonce = std::env::var("NONCE").expect("NONCE is set");
    let mut args = std::env::args();
    let me = args.next().expect("argv[0]");
    if args.next().as_deref() == Some("child") {
        println!("child {}", nonce.chars().rev().collect::<String>());
        return;
    }
    let port: u16 = std::env::var("PORT").expect("PORT is set").parse().expect("PORT is a number");

    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1:PORT");
    let body = format!("hello {nonce}");
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("request line");
        assert!(line.starts_with("GET / "), "unexpected request {line:?}");
        loop {
            line.clear();
            reader.read_line(&mut line).expect("header line");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut stream = reader.into_inner();
        write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}", body.len()).expect("response");
    });
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect to 127.0.0.1:PORT");
    client.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let mut response = String::new();
    client.read_to_string(&mut response).expect("read response");
    server.join().expect("server thread");
    let (head, got) = response.split_once("\r\n\r\n").expect("a header/body separator");
    assert!(head.starts_with("HTTP/1.0 200 "), "status line of {head:?}");

    std::fs::write("/var/rust.txt", &nonce).expect("write /var/rust.txt");
    let back = std::fs::read_to_string("/var/rust.txt").expect("read /var/rust.txt");

    let out = Command::new(&me).arg("child").output().expect("spawn the child");
    assert!(out.status.success(), "child failed: {:?}", out.status);
    let child = String::from_utf8(out.stdout).expect("utf-8");

    println!("RESULT http={got} var={back} child={}", child.trim_end());
}
