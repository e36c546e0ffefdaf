//! Every Cap'n Proto interface that crosses a Granary process boundary, and the Rust generated
//! from it.
//!
//! The `.capnp` sources live in `schema/capnp/`; the generated modules in `src/generated/` are
//! committed so that a build needs no `capnp` compiler. The test `generated_is_current`
//! regenerates them with Debian's `capnp` (installed by the README's test command) and fails
//! if they differ; `GRANARY_REGEN=1 cargo test -p granary-schema` rewrites them.
//!
//! May touch: nothing but memory, and sockets its callers hand it. This crate opens nothing
//! and has no policy; it defines types, [`forward`] keeps one of their contracts (WebSession's
//! pipelined request body) across a process that passes calls on, and [`vat_network`] and
//! [`socket::Socket`] are the transport every Granary connection shares.
//! Contracts (who calls what, what each method promises) are in SPEC.md, "Schemas".

#![allow(clippy::all, unused_parens, missing_docs)]

macro_rules! generated {
    ($($name:ident => $file:literal),* $(,)?) => {
        $(
            #[allow(clippy::all, rustdoc::all, unused)]
            pub mod $name {
                include!(concat!("generated/", $file));
            }
        )*
    };
}

generated! {
    util_capnp => "util_capnp.rs",
    package_capnp => "package_capnp.rs",
    powerbox_capnp => "powerbox_capnp.rs",
    grain_capnp => "grain_capnp.rs",
    web_session_capnp => "web_session_capnp.rs",
    supervisor_capnp => "supervisor_capnp.rs",
    control_capnp => "control_capnp.rs",
    mail_capnp => "mail_capnp.rs",
    sample_capnp => "sample_capnp.rs",
}

pub mod forward;
pub mod lane;
pub mod socket;

/// A Cap'n Proto two-party network over one Granary connection (server ↔ supervisor,
/// supervisor ↔ grain): buffered both ways, so a message's segment table and segments leave in
/// one `write` and arrive in one `read` (capnp-futures writes them separately and flushes
/// after each message), with the stream window of [`STREAM_WINDOW_BYTES`].
pub fn vat_network<R, W>(reader: R, writer: W, side: capnp_rpc::rpc_twoparty_capnp::Side) -> capnp_rpc::twoparty::VatNetwork<futures::io::BufReader<R>>
where
    R: futures::AsyncRead + Unpin + 'static,
    W: futures::AsyncWrite + Unpin + 'static,
{
    const BUFFER: usize = 64 << 10;
    let reader = futures::io::BufReader::with_capacity(BUFFER, reader);
    let writer = futures::io::BufWriter::with_capacity(BUFFER, writer);
    let mut network = capnp_rpc::twoparty::VatNetwork::new(reader, writer, side, Default::default());
    network.set_window_size(STREAM_WINDOW_BYTES);
    network
}

/// Bytes of `-> stream` calls (`ByteStream.write`, `WebSocketPeer.send`) each Granary
/// connection keeps in flight before the sender waits. capnp-rpc's default, 64 KiB, is one
/// body chunk: every hop (gateway ↔ supervisor ↔ bridge) would then wait a round trip per
/// chunk. 1 MiB keeps bodies moving while bounding the memory per stream.
pub const STREAM_WINDOW_BYTES: usize = 1 << 20;

/// The schema files, by name, for tools that want to show or hash them.
pub const SCHEMA_FILES: &[&str] = &[
    "util.capnp",
    "package.capnp",
    "powerbox.capnp",
    "grain.capnp",
    "web-session.capnp",
    "supervisor.capnp",
    "control.capnp",
    "mail.capnp",
    "sample.capnp",
];
