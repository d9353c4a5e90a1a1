//! Snapshot archives in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW; `moto` in the
//! tests): the store replicas and nodes share, so a snapshot packed on one host restores on
//! another. Requests are signed by `rusty-s3` (SigV4 without I/O of its own) and sent with
//! reqwest. An archive is written as a multipart upload of `PART`-sized parts, one part in
//! memory at a time, or as one PUT when it is smaller than a part; either way the object
//! appears only whole, and an abandoned write is aborted. Like every store, its calls block
//! (they run on the blocking pool); reads stream.

use std::io::{self, Write};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use rusty_s3::actions::{AbortMultipartUpload, CompleteMultipartUpload, CreateMultipartUpload, S3Action, UploadPart};
use rusty_s3::{Bucket, Credentials};
use tokio::runtime::Handle;

use super::store::{ObjectWriter, SnapshotStore};
use crate::config::S3Location;

/// The size of each uploaded part (S3 wants at least 5 MiB but for the last).
const PART: usize = 16 << 20;
/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// Most of an answer's body read when it is not an archive (errors, upload ids, results).
const MAX_ERROR: usize = 16 << 10;
/// The longest one request to the bucket may take (a part is 16 MiB).
const CALL_LIMIT: Duration = Duration::from_secs(300);

/// One client for every store: connections to the bucket are reused.
static HTTP: LazyLock<reqwest::Client> = LazyLock::new(|| {
    crate::runtime::outbound::client(Duration::from_secs(10), Some(Duration::from_secs(120)), None).unwrap_or_else(|_| reqwest::Client::new())
});

pub struct S3Store {
    bucket: Arc<Bucket>,
    credentials: Arc<Credentials>,
    prefix: String,
}

impl S3Store {
    pub fn new(location: &S3Location) -> Self {
        S3Store { bucket: location.bucket.clone(), credentials: location.credentials.clone(), prefix: location.prefix.clone() }
    }

    fn object(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

fn failed(what: &str, error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("the snapshot bucket: {what}: {error}"))
}

/// A request's failure without its URL (a signed URL names the access key and would work).
fn unsent(what: &str, error: reqwest::Error) -> io::Error {
    failed(what, error.without_url())
}

/// At most `MAX_ERROR` bytes of an answer's body, as text.
async fn bounded_text(mut answer: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = answer.chunk().await {
        body.extend_from_slice(&chunk[..chunk.len().min(MAX_ERROR - body.len())]);
        if body.len() >= MAX_ERROR {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// The answer if it is a success, else an error naming the status and the start of the body.
async fn checked(what: &str, sent: reqwest::Result<reqwest::Response>) -> io::Result<reqwest::Response> {
    let answer = sent.map_err(|e| unsent(what, e))?;
    if answer.status().is_success() {
        return Ok(answer);
    }
    let status = answer.status();
    let kind = if status == reqwest::StatusCode::NOT_FOUND { io::ErrorKind::NotFound } else { io::ErrorKind::Other };
    Err(io::Error::new(kind, format!("the snapshot bucket: {what}: {status}: {}", bounded_text(answer).await)))
}

/// Runs one request to the bucket on the blocking thread, within `CALL_LIMIT`.
fn block_on<T>(handle: &Handle, what: &str, call: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    handle.block_on(async { tokio::time::timeout(CALL_LIMIT, call).await.unwrap_or_else(|_| Err(failed(what, "timed out"))) })
}

impl SnapshotStore for S3Store {
    fn create(&self, key: &str) -> io::Result<Box<dyn ObjectWriter>> {
        let handle = Handle::try_current().map_err(|e| failed("no runtime", e))?;
        let (bucket, credentials, object) = (self.bucket.clone(), self.credentials.clone(), self.object(key));
        Ok(Box::new(S3Writer { handle, bucket, credentials, object, buffer: Vec::with_capacity(PART), upload: None, etags: Vec::new() }))
    }

    fn open(&self, key: &str) -> io::Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>> {
        let url = self.bucket.get_object(Some(&self.credentials), &self.object(key)).sign(SIGNED_FOR);
        let body = crate::runtime::deferred(
            async move {
                let answer = checked("reading an archive", HTTP.get(url).send().await).await?;
                Ok(answer.bytes_stream().map_err(|e| unsent("reading an archive", e)).boxed())
            },
            Err,
        );
        Ok(Box::new(tokio_util::io::StreamReader::new(body)))
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        let handle = Handle::try_current().map_err(|e| failed("no runtime", e))?;
        let url = self.bucket.delete_object(Some(&self.credentials), &self.object(key)).sign(SIGNED_FOR);
        // S3 answers 204 for a missing object too.
        block_on(&handle, "deleting an archive", async { checked("deleting an archive", HTTP.delete(url).send().await).await.map(drop) })
    }
}

struct S3Writer {
    handle: Handle,
    bucket: Arc<Bucket>,
    credentials: Arc<Credentials>,
    object: String,
    buffer: Vec<u8>,
    /// The multipart upload, once the archive outgrew one part.
    upload: Option<String>,
    etags: Vec<String>,
}

impl S3Writer {
    /// Sends the buffer as the next part (starting the multipart upload first if needed).
    fn send_part(&mut self) -> io::Result<()> {
        let (bucket, credentials, object) = (&*self.bucket, &*self.credentials, self.object.as_str());
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART));
        let upload = match &self.upload {
            Some(id) => id.clone(),
            None => {
                let url = CreateMultipartUpload::new(bucket, Some(credentials), object).sign(SIGNED_FOR);
                let text = block_on(&self.handle, "starting an upload", async {
                    Ok(bounded_text(checked("starting an upload", HTTP.post(url).send().await).await?).await)
                })?;
                let id = CreateMultipartUpload::parse_response(&text).map_err(|e| failed("starting an upload", e))?.upload_id().to_owned();
                self.upload = Some(id.clone());
                id
            }
        };
        let number = u16::try_from(self.etags.len() + 1).map_err(|_| failed("uploading", "more than 10000 parts"))?;
        let url = UploadPart::new(bucket, Some(credentials), object, number, &upload).sign(SIGNED_FOR);
        let etag = block_on(&self.handle, "uploading a part", async {
            let answer = checked("uploading a part", HTTP.put(url).body(body).send().await).await?;
            let etag = answer.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
            etag.ok_or_else(|| failed("uploading a part", "no ETag in the answer"))
        })?;
        self.etags.push(etag);
        Ok(())
    }
}

impl Write for S3Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = PART - self.buffer.len();
        let taken = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..taken]);
        if self.buffer.len() == PART {
            self.send_part()?;
        }
        Ok(taken)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> io::Result<()> {
        let Some(upload) = self.upload.clone() else {
            // Smaller than a part: one PUT.
            let url = self.bucket.put_object(Some(&self.credentials), &self.object).sign(SIGNED_FOR);
            let body = std::mem::take(&mut self.buffer);
            return block_on(&self.handle, "writing an archive", async {
                checked("writing an archive", HTTP.put(url).body(body).send().await).await.map(drop)
            });
        };
        if !self.buffer.is_empty() {
            self.send_part()?;
        }
        let etags = std::mem::take(&mut self.etags);
        let action = CompleteMultipartUpload::new(&self.bucket, Some(&self.credentials), &self.object, &upload, etags.iter().map(String::as_str));
        let url = action.sign(SIGNED_FOR);
        let body = action.body();
        let completed = block_on(&self.handle, "finishing an upload", async {
            Ok(bounded_text(checked("finishing an upload", HTTP.post(url).body(body).send().await).await?).await)
        });
        // S3 may answer 200 and still report an error in the body (an `<Error>` document; the
        // success document's root is spelt differently by different servers).
        let text = completed?;
        if text.contains("<Error>") {
            return Err(failed("finishing an upload", text.chars().take(MAX_ERROR).collect::<String>()));
        }
        self.upload = None;
        Ok(())
    }
}

impl Drop for S3Writer {
    /// An abandoned multipart upload is aborted, so its parts stop taking space.
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            let url = AbortMultipartUpload::new(&self.bucket, Some(&self.credentials), &self.object, &upload).sign(SIGNED_FOR);
            let _ =
                block_on(&self.handle, "aborting an upload", async { HTTP.delete(url).send().await.map_err(|e| unsent("aborting an upload", e)) });
        }
    }
}
