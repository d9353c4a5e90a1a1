//! `/metrics`: Prometheus text format behind `OCAAS_METRICS_TOKEN`, scraped by a real
//! Prometheus server (Debian's `prometheus`) whose query API then returns ocaas's series.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{ChildGuard, assert_error, spawn_app, spawn_app_with};

const TOKEN: &str = "scrape-secret-for-tests";

#[tokio::test]
async fn metrics_need_the_token_and_are_off_without_one() {
    let off = spawn_app().await;
    assert_error(off.anon(Method::GET, "/metrics").send().await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;

    let app = spawn_app_with(|s| s.metrics_token = Some(TOKEN.to_owned().into())).await;
    assert_error(app.anon(Method::GET, "/metrics").send().await.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized").await;
    let wrong = app.anon(Method::GET, "/metrics").bearer_auth("not-it").send().await.unwrap();
    assert_error(wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // The user's API key is no metrics token either.
    assert_error(app.api(Method::GET, "/metrics").send().await.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized").await;

    app.api(Method::GET, "/api/instances").send().await.unwrap();
    let missing = uuid::Uuid::new_v4();
    app.api(Method::GET, &format!("/api/instances/{missing}")).send().await.unwrap();
    let response = app.anon(Method::GET, "/metrics").bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.contains(r#"ocaas_http_requests_total{method="GET",route="/api/instances",status="200"} 1"#), "{text}");
    // Counted by route template, never by the raw path.
    assert!(text.contains(r#"route="/api/instances/{instanceId}",status="404""#), "{text}");
    assert!(!text.contains(&missing.to_string()));
    assert!(text.contains(r#"ocaas_instances{status="ready"} 0"#), "{text}");
    assert!(text.contains("ocaas_db_pool_connections"), "{text}");
    assert!(text.contains("ocaas_http_request_duration_seconds_bucket"), "{text}");
}

#[tokio::test]
async fn a_real_prometheus_scrapes_ocaas_and_answers_queries() {
    let app = spawn_app_with(|s| s.metrics_token = Some(TOKEN.to_owned().into())).await;
    app.api(Method::GET, "/api/instances").send().await.unwrap();
    let target = app.address.trim_start_matches("http://").to_owned();
    let dir = std::env::temp_dir().join(format!("ocaas-prometheus-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ocaas\n    authorization:\n      credentials: {TOKEN}\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Debian's prometheus package is needed (apt-get install prometheus)");
    let _prometheus = ChildGuard(child, dir);

    let query = format!("http://127.0.0.1:{port}/api/v1/query");
    let series = r#"ocaas_http_requests_total{route="/api/instances",method="GET",status="200"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = reqwest::Client::new();
    loop {
        if let Ok(response) = client.get(&query).query(&[("query", series)]).send().await
            && let Ok(body) = response.json::<Value>().await
            && let Some(first) = body["data"]["result"].as_array().and_then(|r| r.first())
        {
            assert_eq!(first["metric"]["job"], "ocaas");
            let value: f64 = first["value"][1].as_str().unwrap().parse().unwrap();
            assert!(value >= 1.0, "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never returned {series}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The scrape itself succeeded (the target is up).
    let up: Value = client.get(&query).query(&[("query", "up{job=\"ocaas\"}")]).send().await.unwrap().json().await.unwrap();
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
}
