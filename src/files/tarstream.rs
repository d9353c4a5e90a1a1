//! Streaming tar, just enough for Docker's archive API: wrap one file's byte stream in an
//! archive (owned by the sandbox user) for upload, and pull the first file out of a downloaded
//! archive, both without holding the file in memory.

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use tar::{EntryType, Header};

use crate::runtime::ByteStream;

const BLOCK: usize = 512;
pub const SANDBOX_UID: u64 = 1000;

fn padding(size: u64) -> usize {
    (BLOCK - (size as usize % BLOCK)) % BLOCK
}

fn header(name: &[u8], size: u64, mode: u32, kind: EntryType) -> std::io::Result<Header> {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(SANDBOX_UID);
    header.set_gid(SANDBOX_UID);
    header.set_mtime(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    let field = &mut header.as_old_mut().name;
    let len = name.len().min(field.len());
    field[..len].copy_from_slice(&name[..len]);
    header.set_cksum();
    Ok(header)
}

/// An archive holding one regular file `name` of exactly `size` bytes taken from `body`.
pub fn single_file_archive(name: &str, size: u64, mode: u32, body: ByteStream) -> std::io::Result<ByteStream> {
    let mut head = BytesMut::new();
    if name.len() >= 100 {
        // GNU long name: an `L` entry whose data is the name.
        let data_len = name.len() as u64 + 1;
        head.extend_from_slice(header(b"././@LongLink", data_len, 0o644, EntryType::GNULongName)?.as_bytes());
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(&[0]);
        head.extend_from_slice(&vec![0; padding(data_len)]);
    }
    head.extend_from_slice(header(name.as_bytes(), size, mode, EntryType::Regular)?.as_bytes());
    let tail = Bytes::from(vec![0u8; padding(size) + 2 * BLOCK]);
    let mut seen = 0u64;
    let checked = body.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > size {
            return Err(std::io::Error::other("the upload is longer than announced"));
        }
        Ok(chunk)
    });
    Ok(Box::pin(stream::once(async move { Ok(head.freeze()) }).chain(checked).chain(stream::once(async move { Ok(tail) }))))
}

pub struct Entry {
    pub kind: EntryType,
    pub size: u64,
    pub body: ByteStream,
}

/// Extended-header records larger than this are refused: they hold names and times, and the
/// archive comes from a sandbox, which must not decide how much ocaas buffers.
const MAX_EXTENSION_BYTES: u64 = 1 << 20;

/// Reads up to the first real entry of `archive` (applying a PAX `size` record, skipping the
/// other PAX and GNU long-name records) and returns its type, size and a stream of exactly its
/// bytes. Files of 8 GiB and more carry their size in a PAX record (or in GNU base-256).
pub async fn first_entry(mut archive: ByteStream) -> std::io::Result<Entry> {
    let mut buf = BytesMut::new();
    let mut pax_size = None;
    loop {
        fill(&mut archive, &mut buf, BLOCK).await?;
        let header = Header::from_byte_slice(&buf[..BLOCK]).clone();
        let size = header.entry_size()?;
        let kind = header.entry_type();
        let _ = buf.split_to(BLOCK);
        if matches!(kind, EntryType::XHeader | EntryType::XGlobalHeader | EntryType::GNULongName | EntryType::GNULongLink) {
            if size > MAX_EXTENSION_BYTES {
                return Err(std::io::Error::other("an extended tar header is implausibly large"));
            }
            let skip = size as usize + padding(size);
            fill(&mut archive, &mut buf, skip).await?;
            let record = buf.split_to(skip);
            if kind == EntryType::XHeader {
                pax_size = pax_size_record(&record[..size as usize])?.or(pax_size);
            }
            continue;
        }
        let size = pax_size.unwrap_or(size);
        let body = stream::unfold((buf, archive, size), |(mut buf, mut archive, remaining)| async move {
            if remaining == 0 {
                return None;
            }
            if buf.is_empty() {
                match archive.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(e), (buf, archive, 0))),
                    None => return Some((Err(std::io::Error::other("the archive ended early")), (buf, archive, 0))),
                }
            }
            let take = buf.len().min(remaining as usize);
            let chunk = buf.split_to(take).freeze();
            Some((Ok(chunk), (buf, archive, remaining - take as u64)))
        });
        return Ok(Entry { kind, size, body: Box::pin(body) });
    }
}

/// The `size` record of a PAX extended header, if it has one.
fn pax_size_record(data: &[u8]) -> std::io::Result<Option<u64>> {
    for extension in tar::PaxExtensions::new(data) {
        let extension = extension?;
        if extension.key() == Ok("size") {
            let value = extension.value().map_err(|_| std::io::Error::other("a PAX size that is not text"))?;
            return value.parse().map(Some).map_err(|_| std::io::Error::other(format!("a PAX size that is not a number: {value:?}")));
        }
    }
    Ok(None)
}

async fn fill(archive: &mut ByteStream, buf: &mut BytesMut, want: usize) -> std::io::Result<()> {
    while buf.len() < want {
        match archive.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk?),
            None => return Err(std::io::Error::other("the archive ended early")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: Vec<u8>, size: usize) -> ByteStream {
        let parts: Vec<std::io::Result<Bytes>> = data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(stream::iter(parts))
    }

    async fn collect(mut s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn round_trips_through_the_tar_crate_and_back() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for name in ["notes.txt", &"n".repeat(150)] {
            let archive = collect(single_file_archive(name, data.len() as u64, 0o644, chunks(data.clone(), 333)).unwrap()).await;
            let mut reader = tar::Archive::new(archive.as_slice());
            let mut entry = reader.entries().unwrap().next().unwrap().unwrap();
            assert_eq!(entry.path().unwrap().to_str().unwrap(), name);
            assert_eq!(entry.header().uid().unwrap(), 1000);
            let mut read = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut read).unwrap();
            assert_eq!(read, data);

            let entry = first_entry(chunks(archive, 100)).await.unwrap();
            assert_eq!(entry.size, data.len() as u64);
            assert!(entry.kind.is_file());
            assert_eq!(collect(entry.body).await, data);
        }
    }

    #[tokio::test]
    async fn a_pax_size_record_overrides_the_header_size() {
        // What Go's archive/tar (Docker) writes for files of 8 GiB and more: a PAX record
        // `size`, and 0 in the ustar field. Here with a small body to check the plumbing.
        let data = b"sized by PAX".to_vec();
        // A record is "<length> size=<n>\n", the length counting itself: 11 for n = 12.
        let record = format!("11 size={}\n", data.len());
        assert_eq!(record.len(), 11);
        let mut archive = Vec::new();
        let mut pax = Header::new_ustar();
        pax.set_entry_type(EntryType::XHeader);
        pax.set_size(record.len() as u64);
        pax.set_cksum();
        archive.extend_from_slice(pax.as_bytes());
        archive.extend_from_slice(record.as_bytes());
        archive.extend_from_slice(&vec![0; padding(record.len() as u64)]);
        let mut file = Header::new_ustar();
        file.set_entry_type(EntryType::Regular);
        file.set_size(0);
        file.set_cksum();
        archive.extend_from_slice(file.as_bytes());
        archive.extend_from_slice(&data);
        archive.extend_from_slice(&vec![0; padding(data.len() as u64) + 2 * BLOCK]);
        let entry = first_entry(chunks(archive, 7)).await.unwrap();
        assert_eq!(entry.size, data.len() as u64);
        assert_eq!(collect(entry.body).await, data);
    }

    #[tokio::test]
    async fn refuses_an_oversized_extended_header() {
        let mut pax = Header::new_ustar();
        pax.set_entry_type(EntryType::XHeader);
        pax.set_size(64 << 20);
        pax.set_cksum();
        let error = first_entry(chunks(pax.as_bytes().to_vec(), 512)).await.err().unwrap();
        assert!(error.to_string().contains("implausibly large"), "{error}");
    }

    #[tokio::test]
    async fn refuses_a_body_longer_than_announced() {
        let archive = single_file_archive("x", 3, 0o644, chunks(b"toolong".to_vec(), 2)).unwrap();
        let results: Vec<_> = archive.collect().await;
        assert!(results.iter().any(|r| r.is_err()));
    }
}
