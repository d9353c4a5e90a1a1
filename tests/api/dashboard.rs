//! `/account` in headless Chromium, walked as a new user would: register with an invite, make
//! a key, create an instance, chat with its agent, type in its terminal, open its desktop —
//! and the page still fits a phone-sized window. Screenshots go to target/test-artifacts/.

use reqwest::{Method, StatusCode};

use crate::helpers::{json, spawn_app_with_docker};
use crate::webdriver::{Browser, artifact};

#[tokio::test]
async fn a_new_user_walks_from_registration_to_the_desktop() {
    let app = spawn_app_with_docker(|_| {}).await;
    let invite = app.invite(1, 2).await;
    let browser = Browser::start().await;
    browser.goto_until_loaded(&app.url("/account"), "return !document.getElementById('auth').hidden", 3).await;

    browser.fill("#register-form input[name=email]", "walker@example.com").await;
    browser.fill("#register-form input[name=password]", "a long enough passphrase").await;
    browser.fill("#register-form input[name=invite_code]", &invite).await;
    browser.click("#register-form button[type=submit]").await;
    browser.wait_for("return !document.getElementById('dashboard').hidden && document.getElementById('user-email').textContent", 20).await;
    browser.screenshot(&artifact("dashboard-1-registered.png")).await;

    browser.fill("#create-key-form input[name=name]", "from the browser").await;
    browser.click("#create-key").await;
    let key = browser.wait_for("return document.getElementById('new-key-secret').textContent", 20).await;
    let key = key.as_str().unwrap().to_owned();
    assert!(key.starts_with("ocaas_"), "{key}");
    let me = json(app.with_key(Method::GET, "/api/account", &key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(me["email"], "walker@example.com", "the key read from the page works");
    browser.wait_for("return document.querySelectorAll('#keys tr').length === 1", 10).await;
    browser.screenshot(&artifact("dashboard-2-key.png")).await;

    browser.click("#create-instance").await;
    browser.wait_for("return document.querySelector('.instance[data-status=ready]') !== null", 150).await;
    browser.screenshot(&artifact("dashboard-3-ready.png")).await;

    browser.click(".instance[data-status=ready] button[data-action=open]").await;
    browser.wait_for("return /^Storage: [0-9.]+ MiB of 1024\\.0 MiB/.test(document.getElementById('panel-usage').textContent)", 20).await;
    browser.fill("#chat-input", "/echo hello from the browser").await;
    browser.click("#chat-send").await;
    browser
        .wait_for(
            "const a = document.querySelector('.msg.assistant');
             return a && a.dataset.status === 'complete' && a.textContent.includes('hello from the browser')
                 && document.getElementById('chat-state').textContent === 'Agent: done';",
            30,
        )
        .await;
    assert_eq!(browser.eval("return document.querySelector('.msg.user').textContent").await, "/echo hello from the browser");
    browser.screenshot(&artifact("dashboard-4-chat.png")).await;

    // A tool step shows in the chat as a collapsible step with its live output.
    browser.fill("#chat-input", "/exec echo step-one; sleep 1; echo step-two").await;
    browser.click("#chat-send").await;
    browser
        .wait_for(
            "const d = document.querySelector('.msg.assistant details.tool');
             return d && d.classList.contains('running') && d.textContent.includes('step-one') && !document.getElementById('chat-stop').hidden;",
            30,
        )
        .await;
    browser
        .wait_for(
            "const d = [...document.querySelectorAll('.msg.assistant details.tool')].pop();
             return d.classList.contains('completed') && d.querySelector('summary').textContent.startsWith('exec · completed')
                 && d.querySelector('pre').textContent === 'step-one\\nstep-two' && document.getElementById('chat-stop').hidden;",
            30,
        )
        .await;
    browser.click(".msg.assistant details.tool summary").await;
    browser.screenshot(&artifact("dashboard-4b-tool-step.png")).await;
    // Stop ends a running turn `aborted`.
    browser.fill("#chat-input", "/exec sleep 60").await;
    browser.click("#chat-send").await;
    browser
        .wait_for(
            "return !document.getElementById('chat-stop').hidden && document.querySelectorAll('.msg.assistant details.tool.running').length === 1",
            30,
        )
        .await;
    browser.click("#chat-stop").await;
    browser
        .wait_for("return document.querySelector('.msg.assistant[data-status=aborted]') !== null && document.getElementById('chat-state').textContent === 'Agent: aborted'", 10)
        .await;

    browser.click(".tabs button[data-tab=terminal]").await;
    browser.wait_for("return document.getElementById('terminal-state').textContent === 'Connected.'", 20).await;
    browser.wait_for("const r = document.querySelector('#terminal .xterm-rows'); return r && r.textContent.includes('$')", 20).await;
    browser.click("#terminal").await;
    browser.type_keys("echo typed-$((20+22))\n").await;
    browser.wait_for("return document.querySelector('#terminal .xterm-rows').textContent.includes('typed-42')", 20).await;
    browser.screenshot(&artifact("dashboard-5-terminal.png")).await;

    browser.click(".tabs button[data-tab=logs]").await;
    browser.wait_for("return document.getElementById('logs-view').textContent.includes('[gateway] listening on')", 20).await;
    browser.screenshot(&artifact("dashboard-5b-logs.png")).await;

    browser.click(".tabs button[data-tab=desktop]").await;
    browser
        .wait_for(
            "const d = document.getElementById('desktop-frame').contentDocument;
             const s = d && d.getElementById('status');
             return s && s.dataset.state === 'connected';",
            30,
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    browser.screenshot(&artifact("dashboard-6-desktop.png")).await;

    browser.set_window(390, 844).await;
    browser.click(".tabs button[data-tab=chat]").await;
    let fits = browser.eval("return document.documentElement.scrollWidth <= window.innerWidth + 1").await;
    browser.screenshot(&artifact("dashboard-7-narrow.png")).await;
    assert_eq!(fits, true, "the page fits a narrow window without sideways scrolling");
    app.settle().await;
}

/// The Activity card shows the account's audit log: a failed sign-in with this email, the
/// sign-in itself and the key made on the page, with the client's address.
#[tokio::test]
async fn the_activity_card_shows_sign_ins_and_key_changes() {
    let app = crate::helpers::spawn_app().await;
    let wrong = app.anon(Method::POST, "/api/account/login").json(&serde_json::json!({"email": app.user.email, "password": "not it at all"}));
    assert_eq!(wrong.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let browser = signed_in(&app).await;
    browser.wait_for("return document.querySelectorAll('#audit tr').length === 2", 20).await;
    browser.fill("#create-key-form input[name=name]", "audited").await;
    browser.click("#create-key").await;
    let actions = browser
        .wait_for(
            "const rows = [...document.querySelectorAll('#audit tr')];
             return rows.length === 3 && rows.map(r => r.dataset.action).join(',');",
            20,
        )
        .await;
    assert_eq!(actions, "key_created,login_succeeded,login_failed");
    let text = browser.eval("return document.getElementById('audit').textContent").await;
    assert!(text.as_str().unwrap().contains("login failed") && text.as_str().unwrap().contains("127.0.0.1"), "{text}");
    browser.screenshot(&artifact("dashboard-8-activity.png")).await;
}

/// A key limited on the page to chat on one instance: shown with its limits, and refused
/// outside them.
#[tokio::test]
async fn a_key_made_on_the_page_can_be_limited_to_scopes_and_one_instance() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = crate::helpers::ready_instance(&app).await;
    let browser = signed_in(&app).await;
    browser.wait_for("return document.querySelector('.instance') !== null", 20).await;
    browser.fill("#create-key-form input[name=name]", "chat bot").await;
    browser.click("#key-limits summary").await;
    browser.wait_for(&format!("return document.querySelector('#key-instance option[value=\"{id}\"]') !== null"), 20).await;
    browser.click("#key-scopes input[value=chat]").await;
    browser.click("#key-scopes input[value='files:read']").await;
    browser.eval(&format!("document.getElementById('key-instance').value = '{id}'; return true")).await;
    browser.click("#create-key").await;
    let key = browser.wait_for("return document.getElementById('new-key-secret').textContent", 20).await;
    let key = key.as_str().unwrap().to_owned();
    let shown = browser.wait_for("const c = document.querySelector('#keys td.scopes'); return c && c.textContent", 20).await;
    assert!(shown.as_str().unwrap().starts_with("chat, files:read on "), "{shown}");
    browser.screenshot(&artifact("dashboard-13-scoped-key.png")).await;
    let chat = app.with_key(Method::GET, &format!("/api/instances/{id}/chat/sessions"), &key).send().await.unwrap();
    assert_eq!(chat.status(), StatusCode::OK, "inside its scope");
    let exec = app.with_key(Method::POST, &format!("/api/instances/{id}/terminal/exec"), &key).json(&serde_json::json!({"command": "id"}));
    crate::helpers::assert_error(exec.send().await.unwrap(), StatusCode::FORBIDDEN, "insufficient_scope").await;
    // The Activity card says which key did what: the seeded user's key made the instance.
    browser.goto_until_loaded(&app.url("/account"), "return document.querySelector('#audit tr[data-action=instance_created]') !== null", 3).await;
    let row = browser.eval("return document.querySelector('#audit tr[data-action=instance_created]').textContent").await;
    assert!(row.as_str().unwrap().contains("key “"), "{row}");
}

#[tokio::test]
async fn the_dashboard_pauses_resumes_pins_and_shows_an_idle_pause() {
    let app = spawn_app_with_docker(|settings| {
        settings.idle.pause_after = std::time::Duration::from_secs(4);
        settings.idle.stop_after = std::time::Duration::ZERO;
        settings.idle.check_interval = std::time::Duration::from_millis(500);
    })
    .await;
    let (id, _) = crate::helpers::ready_instance(&app).await;
    let browser = signed_in(&app).await;
    let row = format!(".instance[data-instance-id='{id}']");

    // Pinned awake: the idle policy leaves it alone.
    browser.wait_for(&format!("return document.querySelector(\"{row} button[data-action='keep awake']\") !== null"), 20).await;
    browser.click(&format!("{row} button[data-action='keep awake']")).await;
    browser.wait_for(&format!("return document.querySelector(\"{row}\").textContent.includes('kept awake')"), 10).await;
    let pinned = json(app.api(Method::GET, &format!("/api/instances/{id}")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(pinned["keep_awake"], true);

    browser.click(&format!("{row} button[data-action=pause]")).await;
    browser.wait_for(&format!("return document.querySelector(\"{row}\").dataset.status === 'paused'"), 10).await;
    browser.click(&format!("{row} button[data-action=resume]")).await;
    browser.wait_for(&format!("return document.querySelector(\"{row}\").dataset.status === 'ready'"), 10).await;

    // Unpinned, it is paused by the policy and the page says why; opening it wakes it.
    browser.click(&format!("{row} button[data-action='let sleep']")).await;
    let badge = browser
        .wait_for(
            &format!("const r = document.querySelector(\"{row}\"); return r.dataset.status === 'paused' && r.querySelector('.badge').textContent"),
            30,
        )
        .await;
    assert_eq!(badge, "paused (idle)");
    browser.screenshot(&artifact("dashboard-9-idle-paused.png")).await;
    browser.click(&format!("{row} button[data-action=open]")).await;
    browser
        .wait_for(
            &format!("return document.querySelector(\"{row}\").dataset.status === 'ready' && !document.getElementById('instance-panel').hidden"),
            10,
        )
        .await;
}

#[tokio::test]
async fn the_snapshots_tab_takes_restores_and_clones() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = crate::helpers::ready_instance(&app).await;
    crate::helpers::sandbox_sh(&sandbox, "echo original > /workspace/notes.txt");
    let browser = signed_in(&app).await;
    browser.wait_for("return document.querySelector('.instance[data-status=ready] button[data-action=open]') !== null", 20).await;
    browser.click(".instance[data-status=ready] button[data-action=open]").await;
    browser.click(".tabs button[data-tab=snapshots]").await;
    browser.wait_for("return document.getElementById('snapshots-state').textContent === 'No snapshots yet.'", 20).await;

    browser.fill("#snapshot-form input[name=name]", "from the page").await;
    browser.click("#take-snapshot").await;
    browser.wait_for("return document.querySelectorAll('#snapshots tr[data-kind=manual]').length === 1", 30).await;
    let text = browser.eval("return document.getElementById('snapshots').textContent").await;
    assert!(text.as_str().unwrap().contains("from the page") && text.as_str().unwrap().contains("MiB"), "{text}");
    let href = browser.eval("return document.querySelector('#snapshots a[download]').getAttribute('href')").await;
    let download = app.api(Method::GET, href.as_str().unwrap()).send().await.unwrap();
    assert_eq!(download.headers()["content-type"], "application/gzip");
    browser.screenshot(&artifact("dashboard-10-snapshots.png")).await;

    crate::helpers::sandbox_sh(&sandbox, "echo damaged > /workspace/notes.txt");
    browser.eval("window.confirm = () => true; return true").await;
    browser.click("#snapshots tr[data-kind=manual] button[data-action=restore]").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while crate::helpers::sandbox_sh(&sandbox, "cat /workspace/notes.txt") != "original" {
        assert!(std::time::Instant::now() < deadline, "the restore from the page did not bring the file back");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    browser.click(".tabs button[data-tab=snapshots]").await;
    browser.wait_for("return document.querySelectorAll('#snapshots tr[data-kind=safety]').length === 1", 30).await;
    browser.click("#snapshots tr[data-kind=manual] button[data-action=clone]").await;
    browser.wait_for("return document.querySelectorAll('.instance').length === 2", 30).await;
    let instances = json(app.api(Method::GET, "/api/instances").send().await.unwrap(), StatusCode::OK).await;
    assert!(instances.as_array().unwrap().iter().any(|i| i["name"] == "from the page (clone)" && i["id"] != id.as_str()), "{instances}");
}

#[tokio::test]
async fn the_agent_tab_links_whatsapp_connects_a_channel_lets_a_sender_in_schedules_and_answers_an_approval() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = crate::helpers::ready_instance(&app).await;
    let browser = signed_in(&app).await;
    browser.wait_for("return document.querySelector('.instance[data-status=ready] button[data-action=open]') !== null", 20).await;
    browser.click(".instance[data-status=ready] button[data-action=open]").await;
    browser.click(".tabs button[data-tab=agent]").await;
    browser.wait_for("return document.getElementById('agent-status').textContent.includes('approval(s) waiting')", 30).await;
    browser.wait_for("return document.querySelectorAll('#channels tr').length === 4", 30).await;

    // A Telegram bot token, written once and never shown.
    browser.fill("#channel-form input[name=bot_token]", "5550001:browser-secret-token").await;
    browser.click("#channel-save").await;
    browser.wait_for("return document.querySelector('#channels tr[data-channel=telegram][data-connected=true]') !== null", 30).await;
    let page = browser.eval("return document.body.innerHTML").await;
    assert!(!page.as_str().unwrap().contains("browser-secret-token"), "the page never shows the token");
    browser.wait_for("return document.getElementById('agent-status').dataset.reason === 'channel'", 30).await;

    // WhatsApp: the QR code is shown as an image with both dark and light modules.
    browser.click("#whatsapp-link").await;
    browser.wait_for("const q = document.getElementById('whatsapp-qr'); return !q.hidden && q.complete && q.naturalWidth > 100", 30).await;
    let dark = browser
        .eval(
            "const q = document.getElementById('whatsapp-qr'); const c = document.createElement('canvas');
             c.width = q.naturalWidth; c.height = q.naturalHeight; const g = c.getContext('2d'); g.drawImage(q, 0, 0);
             const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;
             for (let i = 0; i < d.length; i += 4) if (d[i] < 64) n++;
             return n / (d.length / 4);",
        )
        .await;
    let dark = dark.as_f64().unwrap();
    assert!((0.1..0.9).contains(&dark), "a QR code has dark and light modules: {dark}");
    let shot = browser.element_screenshot("#whatsapp-qr", &artifact("dashboard-11-whatsapp-qr.png")).await;
    assert!(shot.starts_with(b"\x89PNG") && shot.len() > 2000, "the screenshot of the QR code is not an empty image ({} bytes)", shot.len());
    crate::helpers::sandbox_sh(&sandbox, "openclaw standin scan-whatsapp");
    browser
        .wait_for("return document.getElementById('whatsapp-qr').hidden && document.getElementById('whatsapp-state').textContent === 'Linked.'", 40)
        .await;

    // A stranger wrote to the bot; the page lets them in.
    crate::helpers::sandbox_sh(&sandbox, "openclaw standin dm telegram 777 Bea");
    browser.click(".tabs button[data-tab=agent]").await;
    browser
        .wait_for("return document.querySelector('#pairings tr') !== null && document.getElementById('pairings').textContent.includes('Bea')", 30)
        .await;
    browser.click("#pairings tr button[data-action=approve]").await;
    browser.wait_for("return document.getElementById('pairings-state').textContent === 'Nobody waits to be let in.'", 30).await;

    // A schedule from the form.
    browser.fill("#schedule-form input[name=name]", "digest").await;
    browser.fill("#schedule-form input[name=when]", "30 7 * * 1").await;
    browser.fill("#schedule-form input[name=message]", "/echo weekly digest").await;
    browser.click("#schedule-add").await;
    browser.wait_for("return document.getElementById('schedules').textContent.includes('30 7 * * 1')", 30).await;

    // Commands wait for approval; the request appears live and is allowed from the page.
    browser.eval("document.querySelector('#tool-policy-form select[name=exec]').value = 'ask'; return true").await;
    browser.click("#tool-policy-save").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let policy = json(app.api(Method::GET, &format!("/api/instances/{id}/tool-policy")).send().await.unwrap(), StatusCode::OK).await;
        if policy["exec"] == "ask" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the policy form did not save: {policy}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let turn = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&serde_json::json!({"message": "/exec echo from-the-page"})).send();
    let turn = tokio::spawn(turn);
    browser.wait_for("return document.querySelector('#approvals tr[data-status=pending]') !== null", 30).await;
    browser.screenshot(&artifact("dashboard-12-agent.png")).await;
    browser.click("#approvals tr[data-status=pending] button[data-action=allow]").await;
    let answered = json(turn.await.unwrap().unwrap(), StatusCode::OK).await;
    assert!(answered["assistant_message"]["content"].as_str().unwrap().contains("from-the-page"), "{answered}");
    browser.wait_for("return document.querySelector('#approvals tr[data-status=allowed]') !== null", 30).await;
}

/// Chromium on `/account`, signed in as the seeded user.
pub async fn signed_in(app: &crate::helpers::TestApp) -> Browser {
    let browser = Browser::start().await;
    browser.goto_until_loaded(&app.url("/account"), "return !document.getElementById('auth').hidden", 3).await;
    browser.fill("#login-form input[name=email]", &app.user.email).await;
    browser.fill("#login-form input[name=password]", crate::helpers::PASSWORD).await;
    browser.click("#login-form button[type=submit]").await;
    browser
}
