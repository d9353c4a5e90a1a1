//! What travels on the node link besides the runtime's own serde types: command output as
//! base64 (a JSON array of numbers would quadruple it), errors, and the framing of logs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::runtime::{ExecOutput, RuntimeError};

/// Header carrying a terminal's `TtyRequest` (JSON, base64), since the body is its keyboard.
pub const TTY_HEADER: &str = "x-ocaas-tty";
/// Header naming the exec a terminal runs as.
pub const EXEC_ID_HEADER: &str = "x-ocaas-exec-id";
/// On a broker call a node relays to the server: which node relays it, the node's relay key
/// (`super::relay_key`) and the sandbox that made the call, as the node found it by address.
pub const NODE_HEADER: &str = "x-ocaas-node";
pub const RELAY_KEY_HEADER: &str = "x-ocaas-relay-key";
pub const SANDBOX_HEADER: &str = "x-ocaas-sandbox";

#[derive(Serialize, Deserialize)]
pub struct Output {
    stdout: String,
    stderr: String,
    exit_code: Option<i64>,
    truncated: bool,
    timed_out: bool,
}

impl From<ExecOutput> for Output {
    fn from(o: ExecOutput) -> Self {
        Output {
            stdout: STANDARD.encode(o.stdout),
            stderr: STANDARD.encode(o.stderr),
            exit_code: o.exit_code,
            truncated: o.truncated,
            timed_out: o.timed_out,
        }
    }
}

impl TryFrom<Output> for ExecOutput {
    type Error = RuntimeError;
    fn try_from(o: Output) -> Result<Self, RuntimeError> {
        let decode = |s: &str| STANDARD.decode(s).map_err(|e| RuntimeError::Other(format!("the node sent unreadable output: {e}")));
        Ok(ExecOutput {
            stdout: decode(&o.stdout)?,
            stderr: decode(&o.stderr)?,
            exit_code: o.exit_code,
            truncated: o.truncated,
            timed_out: o.timed_out,
        })
    }
}

/// A refusal or failure, with the `RuntimeError` kind it stands for.
#[derive(Serialize, Deserialize)]
pub struct Failure {
    pub kind: String,
    pub message: String,
}

impl Failure {
    pub fn into_error(self, status: u16) -> RuntimeError {
        match self.kind.as_str() {
            "not_found" => RuntimeError::NotFound(self.message),
            "conflict" => RuntimeError::Conflict(self.message),
            "unavailable" => RuntimeError::Unavailable(self.message),
            _ => RuntimeError::Other(format!("the node answered {status}: {}", self.message)),
        }
    }
}

/// Header carrying the storage an archive is unpacked into (`DiskSpec`, JSON, base64).
pub const DISK_HEADER: &str = "x-ocaas-disk";

/// Pack stream frames: data, then nothing (done) or one of the stops.
pub const PACK_DATA: u8 = 0;
pub const PACK_TOO_LARGE: u8 = 1;
pub const PACK_TIMED_OUT: u8 = 2;
pub const PACK_FAILED: u8 = 3;

/// One frame of a streamed answer: `[kind: u8][length: u32 BE][bytes]`. Logs use the kind
/// for stderr (1) or stdout (0); packs for data or why it stopped.
pub fn frame(kind: u8, bytes: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + bytes.len());
    out.put_u8(kind);
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
    out.freeze()
}

/// Splits complete frames off `buffer`; a frame longer than `max` is an error.
pub fn take_frames(buffer: &mut BytesMut, max: usize) -> Result<Vec<(u8, Bytes)>, RuntimeError> {
    let mut out = Vec::new();
    while buffer.len() >= 5 {
        let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
        if len > max {
            return Err(RuntimeError::Other("the node sent an oversized frame".into()));
        }
        if buffer.len() < 5 + len {
            break;
        }
        let frame = buffer.split_to(5 + len).freeze();
        out.push((frame[0], frame.slice(5..)));
    }
    Ok(out)
}

pub fn encode_json(value: &impl Serialize) -> String {
    STANDARD.encode(serde_json::to_vec(value).expect("a node request serializes"))
}

pub fn decode_json<T: serde::de::DeserializeOwned>(raw: &str) -> Option<T> {
    serde_json::from_slice(&STANDARD.decode(raw).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split_and_oversized_ones_are_refused() {
        let frames = [(0u8, Bytes::from_static(b"hello\n")), (1u8, Bytes::from_static(b"oops"))];
        let wire: Vec<u8> = frames.iter().flat_map(|(k, b)| frame(*k, b).to_vec()).collect();
        for cut in 0..wire.len() {
            let mut buffer = BytesMut::from(&wire[..cut]);
            let mut got = take_frames(&mut buffer, 64).unwrap();
            buffer.extend_from_slice(&wire[cut..]);
            got.extend(take_frames(&mut buffer, 64).unwrap());
            assert_eq!(got, frames.to_vec());
        }
        let mut huge = BytesMut::from(&frame(0, &[0u8; 100])[..]);
        assert!(take_frames(&mut huge, 64).is_err());
    }
}
