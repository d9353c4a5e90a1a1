//! RFB security on both sides of the desktop bridge. The sandbox's VNC server asks for the
//! instance's own password (so nothing else on the host can open the desktop); ocaas answers it
//! on the client's behalf, then greets the client itself with security type None, so noVNC and
//! any RFB client keep working unchanged: the ticket or API key is the client's credential.
//! Everything the sandbox sends during the handshake is bounded in size and time.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use des::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const VERSION_3_8: &[u8; 12] = b"RFB 003.008\n";
const SECURITY_NONE: u8 = 1;
const SECURITY_VNC: u8 = 2;
/// A handshake (either side) that takes longer is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest failure reason read from the sandbox.
const MAX_REASON: usize = 1024;

/// The answer to a VNC authentication challenge: the challenge DES-encrypted with the password
/// (at most 8 bytes, zero-padded) as key, each key byte's bits reversed (RFB's quirk).
pub fn vnc_response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (slot, byte) in key.iter_mut().zip(password.bytes()) {
        *slot = byte.reverse_bits();
    }
    let cipher = des::Des::new_from_slice(&key).expect("DES takes an 8-byte key");
    let mut response = *challenge;
    for block in response.chunks_exact_mut(8) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    response
}

async fn read_reason(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let Ok(length) = stream.read_u32().await else { return "no reason given".into() };
    let mut reason = vec![0u8; (length as usize).min(MAX_REASON)];
    match stream.read_exact(&mut reason).await {
        Ok(_) => String::from_utf8_lossy(&reason).into_owned(),
        Err(_) => "no reason given".into(),
    }
}

/// Performs the client side of the RFB 3.8 handshake with the sandbox's VNC server up to a
/// successful security result, so the stream continues with `ClientInit`.
pub async fn authenticate_upstream(stream: &mut (impl AsyncRead + AsyncWrite + Unpin), password: &str) -> Result<(), String> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut version = [0u8; 12];
        stream.read_exact(&mut version).await.map_err(|e| format!("no RFB greeting: {e}"))?;
        if !version.starts_with(b"RFB 003.") {
            return Err("not an RFB server".to_owned());
        }
        stream.write_all(VERSION_3_8).await.map_err(|e| e.to_string())?;
        let count = stream.read_u8().await.map_err(|e| e.to_string())?;
        if count == 0 {
            return Err(format!("the VNC server refused: {}", read_reason(stream).await));
        }
        let mut types = vec![0u8; count as usize];
        stream.read_exact(&mut types).await.map_err(|e| e.to_string())?;
        if types.contains(&SECURITY_VNC) {
            stream.write_u8(SECURITY_VNC).await.map_err(|e| e.to_string())?;
            let mut challenge = [0u8; 16];
            stream.read_exact(&mut challenge).await.map_err(|e| e.to_string())?;
            stream.write_all(&vnc_response(password, &challenge)).await.map_err(|e| e.to_string())?;
        } else if types.contains(&SECURITY_NONE) {
            stream.write_u8(SECURITY_NONE).await.map_err(|e| e.to_string())?;
        } else {
            return Err(format!("the VNC server offers no usable security type ({types:?})"));
        }
        match stream.read_u32().await.map_err(|e| e.to_string())? {
            0 => Ok(()),
            _ => Err(format!("the VNC server refused the password: {}", read_reason(stream).await)),
        }
    })
    .await
    .map_err(|_| "the VNC server's handshake timed out".to_owned())?
}

/// Collects `n` bytes of binary frames from the client; whatever came beyond them is returned
/// too (a client may send its next message in the same frame).
async fn client_bytes(socket: &mut WebSocket, buffer: &mut Vec<u8>, n: usize) -> Result<(), ()> {
    while buffer.len() < n {
        match socket.recv().await {
            Some(Ok(Message::Binary(data))) => buffer.extend_from_slice(&data),
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            _ => return Err(()),
        }
        if buffer.len() > n + (64 << 10) {
            return Err(());
        }
    }
    Ok(())
}

/// Greets the websocket client as an RFB server offering security type None (in the version the
/// client chose: 3.3, 3.7 or 3.8); returns the bytes the client sent past the handshake, which
/// belong to the upstream (its `ClientInit`).
pub async fn greet_client(socket: &mut WebSocket) -> Result<Vec<u8>, ()> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        socket.send(Message::Binary(VERSION_3_8.to_vec().into())).await.map_err(|_| ())?;
        let mut buffer = Vec::new();
        client_bytes(socket, &mut buffer, 12).await?;
        let minor = match &buffer[..12] {
            b"RFB 003.003\n" => 3,
            b"RFB 003.007\n" => 7,
            version if version.starts_with(b"RFB 003.") => 8,
            _ => return Err(()),
        };
        buffer.drain(..12);
        if minor == 3 {
            // 3.3: the server decides, as a 32-bit type; no result follows for None.
            socket.send(Message::Binary(vec![0, 0, 0, SECURITY_NONE].into())).await.map_err(|_| ())?;
            return Ok(buffer);
        }
        socket.send(Message::Binary(vec![1, SECURITY_NONE].into())).await.map_err(|_| ())?;
        client_bytes(socket, &mut buffer, 1).await?;
        if buffer.remove(0) != SECURITY_NONE {
            return Err(());
        }
        if minor == 8 {
            socket.send(Message::Binary(vec![0, 0, 0, 0].into())).await.map_err(|_| ())?;
        }
        Ok(buffer)
    })
    .await
    .map_err(|_| ())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vnc_response_depends_on_the_first_eight_password_characters() {
        // The real x11vnc accepting it is checked by the desktop integration tests.
        let challenge: [u8; 16] = *b"0123456789abcdef";
        let response = vnc_response("password", &challenge);
        assert_ne!(response, challenge);
        assert_eq!(vnc_response("password", &challenge), response, "deterministic");
        assert_ne!(vnc_response("passwore", &challenge), response, "depends on the password");
        assert_eq!(vnc_response("password-and-more", &challenge), response, "only 8 characters count");
    }

    #[tokio::test]
    async fn authentication_answers_a_password_challenge_and_reads_the_result() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let serve = tokio::spawn(async move {
            server.write_all(VERSION_3_8).await.unwrap();
            let mut version = [0u8; 12];
            server.read_exact(&mut version).await.unwrap();
            server.write_all(&[1, SECURITY_VNC]).await.unwrap();
            assert_eq!(server.read_u8().await.unwrap(), SECURITY_VNC);
            let challenge = [7u8; 16];
            server.write_all(&challenge).await.unwrap();
            let mut answer = [0u8; 16];
            server.read_exact(&mut answer).await.unwrap();
            let ok = answer == vnc_response("s3cret", &challenge);
            server.write_u32(if ok { 0 } else { 1 }).await.unwrap();
            if !ok {
                server.write_u32(6).await.unwrap();
                server.write_all(b"denied").await.unwrap();
            }
            ok
        });
        authenticate_upstream(&mut client, "s3cret").await.unwrap();
        assert!(serve.await.unwrap());
    }

    #[tokio::test]
    async fn a_silent_or_lying_server_is_an_error_not_a_hang() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            server.write_all(b"HTTP/1.1 200").await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        assert_eq!(authenticate_upstream(&mut client, "x").await, Err("not an RFB server".to_owned()));
    }
}
