//! Pages checked in a real headless Chromium (Debian's `chromium`), with name resolution for
//! every host but 127.0.0.1 blocked so nothing can load from elsewhere.

use std::process::Command;

use serde_json::Value;

use crate::helpers::spawn_app;
use crate::webdriver::chromium;

/// Loads `url` and returns the rendered DOM and every request the page itself started.
fn render(url: &str) -> (String, Vec<(String, String)>) {
    let dir = std::env::temp_dir().join(format!("ocaas-chromium-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let netlog = dir.join("netlog.json");
    let output = Command::new(chromium())
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update"])
        .arg("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .args(["--virtual-time-budget=15000", "--dump-dom", url])
        .output()
        .expect("running chromium");
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    let log: Value = serde_json::from_str(&std::fs::read_to_string(&netlog).unwrap()).unwrap();
    let requests = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| {
            let params = &event["params"];
            Some((params["initiator"].as_str()?.to_owned(), params["url"].as_str()?.to_owned()))
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    (String::from_utf8(output.stdout).unwrap(), requests)
}

#[tokio::test]
async fn docs_render_every_operation_offline() {
    let app = spawn_app().await;
    let url = app.url("/docs/");
    let (dom, requests) = tokio::task::spawn_blocking(move || render(&url)).await.unwrap();

    let spec = serde_json::to_value(ocaas::router::openapi()).unwrap();
    for path in spec["paths"].as_object().unwrap().keys() {
        assert!(dom.contains(&format!("data-path=\"{path}\"")), "Swagger UI did not render {path}");
    }
    assert!(dom.contains("Authorize"), "the Authorize button is there");

    let from_page: Vec<&String> = requests.iter().filter(|(initiator, _)| *initiator == app.address).map(|(_, url)| url).collect();
    assert!(from_page.iter().any(|u| u.ends_with("/api/openapi.json")), "{from_page:?}");
    for url in &from_page {
        assert!(url.starts_with(&app.address), "the docs page requested {url} from another host");
    }
}

/// Swagger UI's Authorize dialog, filled with `key`.
async fn authorize(browser: &crate::webdriver::Browser, key: &str) {
    browser.click("button.authorize").await;
    browser.fill(".modal-ux input", key).await;
    browser.click(".modal-ux .auth-btn-wrapper button.authorize").await;
    browser.click(".modal-ux .auth-btn-wrapper button.btn-done").await;
}

/// The docs open operations ready to try (tryItOutEnabled); press "Try it out" otherwise.
async fn press_try_it_out(browser: &crate::webdriver::Browser) {
    if browser.eval("return document.querySelector('.opblock.is-open button.execute') === null").await == true {
        browser.click(".opblock.is-open .try-out__btn").await;
    }
}

/// Presses Execute on the open operation and waits for the response's status.
async fn execute(browser: &crate::webdriver::Browser) -> serde_json::Value {
    browser.click(".opblock.is-open button.execute").await;
    browser
        .wait_for(
            "const s = document.querySelector('.opblock.is-open .live-responses-table tbody .response-col_status'); return s && s.textContent.trim()",
            20,
        )
        .await
}

#[tokio::test]
async fn swagger_authorize_then_try_it_out_calls_the_api_with_the_key() {
    let app = spawn_app().await;
    let browser = crate::webdriver::Browser::start().await;
    browser.goto_until_loaded(&app.url("/docs/"), "return document.querySelector('button.authorize') !== null", 3).await;
    authorize(&browser, &app.user.key).await;
    browser.click(".opblock-get .opblock-summary-path[data-path='/api/instances']").await;
    press_try_it_out(&browser).await;
    let status = execute(&browser).await;
    browser.screenshot(&crate::webdriver::artifact("docs-try-it-out.png")).await;
    assert_eq!(status, "200", "Try it out with the authorized key answers 200");
    let used: Option<String> = sqlx::query_scalar("SELECT last_used_at::text FROM api_keys WHERE name = 'seed'").fetch_one(&app.db).await.unwrap();
    assert!(used.is_some(), "the request carried the seeded key");
}

/// "Try it out" on `files/read` builds the right URL (`path` in the query, as the spec now
/// says) and gets the file back.
#[tokio::test]
async fn swagger_try_it_out_reads_a_file_with_the_path_in_the_query() {
    let app = crate::helpers::spawn_app_with_docker(|_| {}).await;
    let (id, _) = crate::helpers::ready_instance(&app).await;
    let write = app
        .api(reqwest::Method::POST, &format!("/api/instances/{id}/files/write"))
        .json(&serde_json::json!({"path": "/workspace/from-swagger.txt", "content": "read through the docs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), reqwest::StatusCode::OK);
    let browser = crate::webdriver::Browser::start().await;
    browser.goto_until_loaded(&app.url("/docs/"), "return document.querySelector('button.authorize') !== null", 3).await;
    authorize(&browser, &app.user.key).await;
    browser.click(".opblock-get .opblock-summary-path[data-path='/api/instances/{instanceId}/files/read']").await;
    press_try_it_out(&browser).await;
    browser.fill(".opblock.is-open tr[data-param-name='instanceId'] input", &id).await;
    browser.fill(".opblock.is-open tr[data-param-name='path'] input", "/workspace/from-swagger.txt").await;
    let status = execute(&browser).await;
    let url = browser.eval("return document.querySelector('.opblock.is-open .request-url pre').textContent").await;
    let body =
        browser.eval("return document.querySelector('.opblock.is-open .live-responses-table .response-col_description pre').textContent").await;
    browser.screenshot(&crate::webdriver::artifact("docs-try-it-out-files-read.png")).await;
    assert_eq!(status, "200", "{url} {body}");
    assert_eq!(url.as_str().unwrap(), format!("{}/api/instances/{id}/files/read?path=%2Fworkspace%2Ffrom-swagger.txt", app.address));
    assert!(body.as_str().unwrap().contains("read through the docs"), "{body}");
    app.settle().await;
}
