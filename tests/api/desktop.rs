//! The desktop: `vnc-url` tickets, an RFB handshake through `vnc/ws` with the sandbox's real
//! VNC server, and the desktop page in headless Chromium showing the remote screen.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{json, ready_instance, spawn_app_with, spawn_app_with_docker};
use crate::webdriver::{Browser, artifact};
use crate::ws::{self, Ws, assert_refused, send_bytes};

/// Reads exactly `n` bytes of the RFB stream, whatever the websocket framing.
pub async fn read_exact(ws: &mut Ws, buffer: &mut Vec<u8>, n: usize) -> Vec<u8> {
    while buffer.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("RFB bytes in time");
        match message.expect("the websocket stays open").unwrap() {
            Message::Binary(bytes) => buffer.extend_from_slice(&bytes),
            Message::Close(frame) => panic!("closed during the RFB handshake: {frame:?}"),
            _ => {}
        }
    }
    buffer.drain(..n).collect()
}

#[tokio::test]
async fn vnc_websocket_speaks_rfb_with_the_sandbox_desktop() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let urls = json(app.api(Method::GET, &format!("/api/instances/{id}/vnc-url")).send().await.unwrap(), StatusCode::OK).await;
    let ws_url = urls["ws_url"].as_str().unwrap();
    let origin = app.address.replacen("http", "ws", 1);
    assert!(ws_url.starts_with(&format!("{origin}/api/instances/{id}/vnc/ws?ticket=")), "{urls}");
    assert!(urls["url"].as_str().unwrap().starts_with(&format!("{}/desktop/{id}#ticket=", app.address)), "{urls}");
    let expires: chrono::DateTime<chrono::Utc> = urls["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - chrono::Utc::now();
    assert!(ttl > chrono::Duration::seconds(50) && ttl <= chrono::Duration::seconds(60), "{urls}");

    let mut vnc = ws::open(ws_url, &[("sec-websocket-protocol", "binary")]).await.expect("the ticket opens the desktop");
    let mut buffer = Vec::new();
    let greeting = read_exact(&mut vnc, &mut buffer, 12).await;
    let greeting = String::from_utf8(greeting).unwrap();
    assert!(greeting.starts_with("RFB 003.00"), "{greeting:?}");
    send_bytes(&mut vnc, b"RFB 003.008\n").await;
    let count = read_exact(&mut vnc, &mut buffer, 1).await[0] as usize;
    assert!(count > 0, "the server offers security types");
    let types = read_exact(&mut vnc, &mut buffer, count).await;
    assert!(types.contains(&1), "no-auth (type 1) is offered: {types:?}");
    send_bytes(&mut vnc, &[1]).await;
    assert_eq!(read_exact(&mut vnc, &mut buffer, 4).await, [0, 0, 0, 0], "SecurityResult OK");
    send_bytes(&mut vnc, &[1]).await; // ClientInit, shared
    let init = read_exact(&mut vnc, &mut buffer, 24).await;
    let width = u16::from_be_bytes([init[0], init[1]]);
    let height = u16::from_be_bytes([init[2], init[3]]);
    assert_eq!((width, height), (1280, 800), "ServerInit has the sandbox's screen size");
    let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    let name = read_exact(&mut vnc, &mut buffer, name_len).await;
    assert!(!name.is_empty());

    // A full framebuffer update request is answered with pixels.
    send_bytes(&mut vnc, &[3, 0, 0, 0, 0, 0, 0x05, 0x00, 0x03, 0x20]).await;
    let header = read_exact(&mut vnc, &mut buffer, 4).await;
    assert_eq!(header[0], 0, "a FramebufferUpdate");

    // The ticket was for one handshake; a bearer key works on its own.
    assert_refused(ws::open(ws_url, &[]).await, StatusCode::UNAUTHORIZED, "unauthorized");
    let mut again = ws::open_with_key(&app.url(&format!("/api/instances/{id}/vnc/ws")), &app.user.key).await.unwrap();
    let mut buffer = Vec::new();
    assert!(String::from_utf8(read_exact(&mut again, &mut buffer, 12).await).unwrap().starts_with("RFB "));
}

#[tokio::test]
async fn vnc_url_uses_the_public_origin() {
    let app = spawn_app_with_docker(|s| s.public_url = Some("https://claw.example.test".into())).await;
    let (id, _) = ready_instance(&app).await;
    let urls = json(app.api(Method::GET, &format!("/api/instances/{id}/vnc-url")).send().await.unwrap(), StatusCode::OK).await;
    assert!(urls["url"].as_str().unwrap().starts_with(&format!("https://claw.example.test/desktop/{id}#ticket=")), "{urls}");
    assert!(urls["ws_url"].as_str().unwrap().starts_with(&format!("wss://claw.example.test/api/instances/{id}/vnc/ws?ticket=")), "{urls}");
}

#[tokio::test]
async fn the_desktop_page_shows_the_remote_screen_in_chromium() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let urls = json(app.api(Method::GET, &format!("/api/instances/{id}/vnc-url")).send().await.unwrap(), StatusCode::OK).await;

    let browser = Browser::start().await;
    // The ticket is only used once the page's scripts have loaded, so a failed load can be retried.
    browser.goto_until_loaded(urls["url"].as_str().unwrap(), "return document.getElementById('status').dataset.state !== 'loading'", 3).await;
    // Generous: on a cold machine the first Chromium start and a CPU-starved x11vnc are slow.
    browser.wait_for("return document.getElementById('status').dataset.state === 'connected'", 90).await;
    // The remote screen is drawn on noVNC's canvas: wait until it holds a real picture.
    let colours = browser
        .wait_for(
            "const c = document.querySelector('#screen canvas');
             if (!c || c.width < 1280) return 0;
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             const seen = new Set();
             for (let i = 0; i < d.length; i += 4 * 97) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
             return seen.size >= 8 ? seen.size : 0;",
            30,
        )
        .await;
    let size: Value = browser.eval("const c = document.querySelector('#screen canvas'); return [c.width, c.height];").await;
    assert_eq!(size, serde_json::json!([1280, 800]));
    assert!(!browser.eval("return location.hash").await.as_str().unwrap().contains("ticket"), "the used ticket leaves the address bar");
    let bytes = browser.screenshot(&artifact("desktop.png")).await;
    assert!(bytes > 10_000, "screenshot of {bytes} bytes");
    assert!(colours.as_u64().unwrap() >= 8);
}

#[tokio::test]
async fn the_desktop_page_says_when_novnc_is_missing() {
    let app = spawn_app_with(|s| s.novnc_dir = "/nonexistent/novnc".into()).await;
    let response = app.anon(Method::GET, &format!("/desktop/{}", uuid::Uuid::new_v4())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = response.text().await.unwrap();
    assert!(page.contains("noVNC was not found") && page.contains("OCAAS_NOVNC_DIR"), "{page}");
}
