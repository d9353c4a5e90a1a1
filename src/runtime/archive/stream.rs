//! Packing and unpacking as streams, so that the same archive can be made on this host or on a
//! node and carried to or from the snapshot store: `pack_stream` runs `pack` on the blocking
//! pool and hands its bytes over as they are made; `unpack_stream` feeds `unpack` from a stream.

use std::io::{self, Write};
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::{Bounds, PackError, pack, unpack};
use crate::runtime::ByteStream;

/// An archive's bytes as they are made; an item `Err` says why it stopped (nothing follows).
pub type PackStream = Pin<Box<dyn Stream<Item = Result<Bytes, PackError>> + Send>>;

/// Hands what is written to the stream's reader; a reader gone is a broken pipe.
struct ChannelWriter(mpsc::Sender<Result<Bytes, PackError>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.blocking_send(Ok(Bytes::copy_from_slice(buf))).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Packs `root` (its `workspace/` and `state/`) within `bounds`, as a stream.
pub fn pack_stream(root: PathBuf, bounds: Bounds) -> PackStream {
    let (tx, rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter(tx.clone());
        if let Err(error) = pack(&root, &mut out, bounds) {
            let _ = tx.blocking_send(Err(error));
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// Replaces the contents of `root`'s `workspace/` and `state/` with the archive's.
pub async fn unpack_stream(archive: ByteStream, root: PathBuf) -> io::Result<()> {
    let mut bridge = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(archive));
    tokio::task::spawn_blocking(move || unpack(&mut bridge, &root)).await.map_err(io::Error::other)?
}
