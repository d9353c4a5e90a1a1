//! Outbound clients against loopback listeners of the test's own: a redirect is handed back,
//! never followed; a name that rebinds to loopback after its check is never connected to.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A loopback listener answering every connection with `answer`; counts connections.
async fn listener(answer: String) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (port, hits) = (listener.local_addr().unwrap().port(), Arc::new(AtomicUsize::new(0)));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let _ = stream.read(&mut [0u8; 4096]).await;
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, hits)
}

fn ok(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
}

#[tokio::test]
async fn a_redirect_to_a_host_local_service_is_handed_back_not_followed() {
    let (secret_port, secret_hits) = listener(ok("host secret")).await;
    let redirect =
        format!("HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{secret_port}/secret.txt\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let (port, hits) = listener(redirect).await;
    let client = client(Duration::from_secs(2), Some(Duration::from_secs(5)), None).unwrap();
    let answer = client.get(format!("http://127.0.0.1:{port}/v1/chat/completions")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 302);
    assert_ne!(answer.text().await.unwrap(), "host secret");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(secret_hits.load(Ordering::SeqCst), 0, "the redirect's target was reached");
}

#[tokio::test]
async fn a_name_that_rebinds_to_loopback_after_its_check_is_never_connected_to() {
    let (port, hits) = listener(ok("host secret")).await;
    let lookups = Arc::new(AtomicUsize::new(0));
    let counted = lookups.clone();
    // First answer public (what a check sees), then loopback (what a second lookup would get).
    let resolver = PublicOnly::with_lookup(move |_| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move { Ok(vec![if n == 0 { IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)) } else { IpAddr::V4(Ipv4Addr::LOCALHOST) }]) }
    });
    assert!(resolver.check("rebind.example").await.is_ok(), "the first answer is public");
    let client = client(Duration::from_secs(2), Some(Duration::from_secs(5)), Some(resolver.clone())).unwrap();
    let refused = client.get(format!("http://rebind.example:{port}/secret.txt")).send().await;
    assert!(refused.is_err(), "the rebound name was connected to: {refused:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a loopback service was reached");
    assert_eq!(lookups.load(Ordering::SeqCst), 2, "one lookup per connection, and it is what is connected to");
    // A literal loopback or metadata address is refused by the check (no lookup happens for it).
    for literal in ["127.0.0.1", "169.254.169.254", "[::ffff:127.0.0.1]", "[64:ff9b::a9fe:a9fe]"] {
        assert!(resolver.check(literal).await.is_err(), "{literal} passed");
    }
}

#[test]
fn every_special_range_and_every_v6_form_of_one_is_not_public() {
    let private = [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "192.168.1.1",
        "172.20.0.1",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "fec0::1",
        "ff02::1",
        "2001:db8::1",
        "2001::1",
        "::ffff:127.0.0.1",
        "::7f00:1",
        "::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::",
        "100::1",
    ];
    for ip in private {
        assert!(!is_public(ip.parse().unwrap()), "{ip} counted as public");
    }
    for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "2a00:1450::1", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
        assert!(is_public(ip.parse().unwrap()), "{ip} counted as not public");
    }
}

#[test]
fn a_literal_private_host_is_named_and_a_public_or_named_one_is_not() {
    assert_eq!(super::private_literal("http://10.0.0.1:8080/x").as_deref(), Some("10.0.0.1"));
    assert_eq!(super::private_literal("https://[::1]/hook").as_deref(), Some("[::1]"));
    assert_eq!(super::private_literal("https://93.184.216.34/hook"), None);
    assert_eq!(super::private_literal("https://hooks.example.com/"), None, "names are checked as they are resolved");
    assert_eq!(super::private_literal("not a url"), None);
}
