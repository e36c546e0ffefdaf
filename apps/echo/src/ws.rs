//! The WebSocket echo (RFC 6455, server side, no extensions): text and binary messages come
//! back whole with their type, pings get pongs, a close is answered with the same code and
//! reason. Messages up to 16 MiB; larger ones close with 1009, invalid UTF-8 with 1007,
//! protocol errors with 1002.

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;

use crate::http::Writer;

pub const MAX_MESSAGE: u64 = 16 * 1024 * 1024;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    crate::util::base64(&crate::util::sha1(format!("{key}{GUID}").as_bytes()))
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

enum Next {
    Frame(Frame),
    /// Close the connection with this code (a protocol violation or a message too big).
    Fail(u16),
}

fn read_frame(r: &mut BufReader<TcpStream>, already: u64) -> io::Result<Next> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h)?;
    let (fin, rsv, opcode, masked) = (h[0] & 0x80 != 0, h[0] & 0x70, h[0] & 0x0f, h[1] & 0x80 != 0);
    let mut len = (h[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        r.read_exact(&mut b)?;
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        r.read_exact(&mut b)?;
        len = u64::from_be_bytes(b);
    }
    if rsv != 0 || !masked {
        return Ok(Next::Fail(1002));
    }
    if opcode >= 8 && (!fin || len > 125) {
        return Ok(Next::Fail(1002));
    }
    if opcode < 8 && already.saturating_add(len) > MAX_MESSAGE {
        return Ok(Next::Fail(1009));
    }
    let mut mask = [0u8; 4];
    r.read_exact(&mut mask)?;
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
    Ok(Next::Frame(Frame { fin, opcode, payload }))
}

fn write_frame(w: &mut Writer, opcode: u8, payload: &[u8]) -> io::Result<()> {
    w.write_all(&[0x80 | opcode])?;
    match payload.len() {
        n if n < 126 => w.write_all(&[n as u8])?,
        n if n <= 0xffff => {
            w.write_all(&[126])?;
            w.write_all(&(n as u16).to_be_bytes())?;
        }
        n => {
            w.write_all(&[127])?;
            w.write_all(&(n as u64).to_be_bytes())?;
        }
    }
    w.write_all(payload)?;
    w.flush()
}

/// Serves the echo until the peer closes (or fails). The 101 response has been sent.
pub fn run(mut r: BufReader<TcpStream>, mut w: Writer) -> io::Result<()> {
    // The message being assembled from fragments: (opcode, data).
    let mut message: Option<(u8, Vec<u8>)> = None;
    loop {
        let already = message.as_ref().map_or(0, |m| m.1.len() as u64);
        let frame = match read_frame(&mut r, already) {
            Ok(Next::Frame(f)) => f,
            Ok(Next::Fail(code)) => return write_frame(&mut w, 8, &code.to_be_bytes()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let complete = match frame.opcode {
            0 => match message.as_mut() {
                None => return write_frame(&mut w, 8, &1002u16.to_be_bytes()),
                Some(m) => {
                    m.1.extend_from_slice(&frame.payload);
                    if frame.fin { message.take() } else { None }
                }
            },
            1 | 2 => {
                if message.is_some() {
                    return write_frame(&mut w, 8, &1002u16.to_be_bytes());
                }
                let m = (frame.opcode, frame.payload);
                if frame.fin {
                    Some(m)
                } else {
                    message = Some(m);
                    None
                }
            }
            8 => {
                // Echo the close (same code and reason); an invalid one is a protocol error.
                let p = &frame.payload;
                let valid = p.is_empty() || (p.len() >= 2 && std::str::from_utf8(&p[2..]).is_ok());
                if valid {
                    write_frame(&mut w, 8, p)?;
                } else {
                    write_frame(&mut w, 8, &1002u16.to_be_bytes())?;
                }
                return Ok(());
            }
            9 => {
                write_frame(&mut w, 10, &frame.payload)?;
                None
            }
            10 => None,
            _ => return write_frame(&mut w, 8, &1002u16.to_be_bytes()),
        };
        if let Some((opcode, data)) = complete {
            if opcode == 1 && std::str::from_utf8(&data).is_err() {
                return write_frame(&mut w, 8, &1007u16.to_be_bytes());
            }
            write_frame(&mut w, opcode, &data)?;
        }
    }
}
