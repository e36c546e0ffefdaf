//! Request lanes (SPEC.md, "Request lanes"): the common HTTP exchange as plain Cap'n Proto
//! messages (`grain.capnp` `LaneFrame`) on a connection of its own, without RPC. This module
//! holds what both ends share: the preamble, the frame limit, and a writer that coalesces
//! queued frames into one write.

use futures::channel::mpsc;
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};

/// The first 8 bytes of a lane connection.
pub const PREAMBLE: &[u8; 8] = b"GRLANE01";

/// The largest frame, in 8-byte words (256 KiB): the traversal limit each end reads with.
pub const MAX_FRAME_WORDS: usize = 32 * 1024;

/// How each end reads frames.
pub fn reader_options() -> capnp::message::ReaderOptions {
    let mut o = capnp::message::ReaderOptions::new();
    o.traversal_limit_in_words(Some(MAX_FRAME_WORDS));
    o
}

/// A message builder sized for a typical frame (one allocation for a 1 KiB exchange).
pub fn new_frame() -> capnp::message::Builder<capnp::message::HeapAllocator> {
    capnp::message::Builder::new(capnp::message::HeapAllocator::new().first_segment_words(512))
}

/// Serializes a built frame.
pub fn encode<A: capnp::message::Allocator>(m: &capnp::message::Builder<A>) -> Vec<u8> {
    capnp::serialize::write_message_to_words(m)
}

/// Reads the next frame; `Ok(None)` at a clean end of the stream. A frame over the limit or
/// malformed is an error: the caller ends the lane.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> capnp::Result<Option<capnp::message::Reader<capnp::serialize::OwnedSegments>>> {
    capnp_futures::serialize::try_read_message(r, reader_options()).await
}

/// Writes every frame sent on `rx`, coalescing what is queued meanwhile into one write, until
/// `rx` ends or a write fails.
pub async fn write_frames<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(f) = rx.next().await {
        buf.extend_from_slice(&f);
        while let Ok(f) = rx.try_recv() {
            buf.extend_from_slice(&f);
        }
        w.write_all(&buf).await?;
        w.flush().await?;
        buf.clear();
    }
    Ok(())
}
