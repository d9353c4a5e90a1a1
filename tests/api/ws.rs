//! A websocket client for the tests (tokio-tungstenite): handshakes with headers, refusals
//! read as the API's JSON errors, and reading a terminal's output until something appears.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `url` (http(s) or ws(s)) with `headers`; a refused handshake comes back as its status
/// and JSON body.
pub async fn open(url: &str, headers: &[(&str, &str)]) -> Result<Ws, (StatusCode, Value)> {
    let url = url.replacen("http", "ws", 1);
    let mut request = url.as_str().into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(Error::Http(response)) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
            let body = response.body().clone().unwrap_or_default();
            Err((status, serde_json::from_slice(&body).unwrap_or_else(|_| panic!("refusal is JSON: {:?}", String::from_utf8_lossy(&body)))))
        }
        Err(other) => panic!("websocket handshake failed: {other}"),
    }
}

pub async fn open_with_key(url: &str, key: &str) -> Result<Ws, (StatusCode, Value)> {
    open(url, &[("authorization", &format!("Bearer {key}"))]).await
}

/// Asserts a handshake was refused with `status` and error `code`.
pub fn assert_refused(result: Result<Ws, (StatusCode, Value)>, status: StatusCode, code: &str) {
    match result {
        Ok(_) => panic!("the handshake was accepted; expected {status} {code}"),
        Err((got, body)) => {
            assert_eq!(got, status, "{body}");
            assert_eq!(body["error"], code, "{body}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        }
    }
}

pub async fn send_bytes(ws: &mut Ws, bytes: &[u8]) {
    ws.send(Message::Binary(bytes.to_vec().into())).await.unwrap();
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

/// Reads terminal output (binary frames) for up to 20 s until `find` recognises something in
/// all of it so far; returns what `find` returned and everything read, or panics with `what`.
async fn read_for<T>(ws: &mut Ws, what: &str, find: impl Fn(&str) -> Option<T>) -> (T, String) {
    let mut seen = String::new();
    let read = async {
        while let Some(message) = ws.next().await {
            if let Message::Binary(bytes) = message.unwrap() {
                seen.push_str(&String::from_utf8_lossy(&bytes));
                if let Some(found) = find(&seen) {
                    return Some(found);
                }
            }
        }
        None
    };
    match tokio::time::timeout(Duration::from_secs(20), read).await {
        Ok(Some(found)) => (found, seen),
        _ => panic!("never saw {what} in the terminal; got {seen:?}"),
    }
}

/// Reads terminal output until `needle` shows up; returns everything read.
pub async fn read_until(ws: &mut Ws, needle: &str) -> String {
    read_for(ws, &format!("{needle:?}"), |seen| seen.contains(needle).then_some(())).await.1
}

/// Reads terminal output until the shell prints `NAME:<digits>:` (typed commands echo with
/// `$(…)` in place of the digits, so the echo never matches); returns the digits.
pub async fn read_number(ws: &mut Ws, name: &str) -> String {
    let marker = format!("{name}:");
    let find = |seen: &str| {
        seen.match_indices(&marker).find_map(|(at, _)| {
            let rest = &seen[at + marker.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (!digits.is_empty() && rest[digits.len()..].starts_with(':')).then_some(digits)
        })
    };
    read_for(ws, &format!("{marker}<number>:"), find).await.0
}

/// The next non-binary message (skipping terminal output).
pub async fn next_control(ws: &mut Ws) -> Option<Message> {
    let next = async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Binary(_)) | Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
                Ok(other) => return Some(other),
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(20), next).await.expect("a control frame in time")
}
