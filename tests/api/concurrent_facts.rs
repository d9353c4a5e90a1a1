//! Facts about an instance that several callers (replicas, the dashboard's parallel requests)
//! write at once, against the real database: each caller gets the one row stored, never an
//! error or nothing (a statement's own reads see neither the row its `INSERT` makes nor one
//! another transaction commits meanwhile); a state change decided on an earlier read does not
//! go through once another replica made that read untrue; feeds show ids in order; and limits
//! counted per user hold for requests sent at once.

use std::time::Duration;

use ocaas::instances::machine::{self, Op};
use ocaas::instances::repo::Guard;
use reqwest::Method;
use serde_json::json;

use crate::helpers::TestApp;

/// A conversation begun on the gateway (a messenger, the agent's own UI) gets its imported
/// session at its first event, even when that event is its last; at the instance's cap, an
/// existing conversation keeps being imported and only a new one is refused.
#[tokio::test]
async fn a_gateway_conversation_gets_its_session_at_its_first_event_and_keeps_it_at_the_cap() {
    use ocaas::chat::repo::imports::gateway_session;
    let app = crate::helpers::spawn_app().await;
    let id = app.ready_instance_row().await;
    let made = gateway_session(&app.db, id, "agent:main:telegram:42", 2).await.unwrap().expect("a new conversation's session");
    assert_eq!((made.gateway_key.as_deref(), made.message_count), (Some("agent:main:telegram:42"), 0));
    let again = gateway_session(&app.db, id, "agent:main:telegram:42", 2).await.unwrap().expect("the same session");
    assert_eq!(again.id, made.id);
    assert!(gateway_session(&app.db, id, "agent:main:discord:7", 2).await.unwrap().is_some());
    assert!(gateway_session(&app.db, id, "agent:main:slack:9", 2).await.unwrap().is_none(), "a third conversation is past the cap");
    let kept = gateway_session(&app.db, id, "agent:main:telegram:42", 2).await.unwrap().expect("an existing conversation at the cap");
    assert_eq!(kept.id, made.id);
}

/// Every page of the dashboard's agent tab asks at once, in each replica: the first pairing of
/// an instance is raced by design. A caller that comes while another's identity is being
/// written gets that identity, not an error (a fresh-clone CI run showed a channels call
/// answered 503 "no rows returned" by this race).
#[tokio::test]
async fn callers_pairing_an_instance_at_once_all_get_its_one_identity() {
    let app = crate::helpers::spawn_app().await;
    let id = app.ready_instance_row().await;
    // The other replica's write, held open while this one's caller comes.
    let mut other = app.db.begin().await.unwrap();
    sqlx::query("INSERT INTO gateway_devices (instance_id, device_id, seed_sealed) VALUES ($1, 'first', '\\x01')")
        .bind(id)
        .execute(&mut *other)
        .await
        .unwrap();
    let db = app.db.clone();
    let second = tokio::spawn(async move { ocaas::gateway::repo::insert_device(&db, id, "second", &[2]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    other.commit().await.unwrap();
    let got = second.await.unwrap().expect("the caller that waited gets the stored identity");
    assert_eq!(got.seed_sealed, vec![1], "the first identity stored wins");

    // And many at once, on fresh instances.
    for _ in 0..5 {
        let id = app.ready_instance_row().await;
        let callers: Vec<_> = (0..16u8)
            .map(|i| {
                let db = app.db.clone();
                tokio::spawn(async move { ocaas::gateway::repo::insert_device(&db, id, &format!("device-{i}"), &[i; 32]).await })
            })
            .collect();
        let mut seeds = Vec::new();
        for caller in callers {
            seeds.push(caller.await.unwrap().expect("every caller gets the stored identity").seed_sealed);
        }
        assert!(seeds.windows(2).all(|pair| pair[0] == pair[1]), "one identity for all: {seeds:?}");
    }
}

/// The state change a replica decided on an earlier read, applied after another replica acted.
async fn apply_guarded(app: &TestApp, id: uuid::Uuid, op: Op, guard: Guard) -> Option<String> {
    machine::apply_guarded(&app.db, id, op, guard).await.unwrap().map(|row| row.status.as_str().to_owned())
}

/// `count` requests made by `request(server, n)`, sent at once, alternately through `app` and a
/// second replica on its database: their statuses, sorted.
async fn statuses_at_once(app: &TestApp, count: usize, request: impl Fn(&TestApp, usize) -> reqwest::RequestBuilder) -> Vec<u16> {
    let other = crate::helpers::respawn(app).await;
    let sent = (0..count).map(|n| request(if n % 2 == 0 { app } else { &other }, n).send());
    let mut codes: Vec<u16> = futures_util::future::join_all(sent).await.iter().map(|a| a.as_ref().unwrap().status().as_u16()).collect();
    codes.sort_unstable();
    codes
}

async fn status_of(app: &TestApp, id: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT status::text FROM instances WHERE id = $1").bind(id).fetch_one(&app.db).await.unwrap()
}

/// A replica on another image lists a pool sandbox as stale; meanwhile a create on another
/// replica gives it to a user. The stale replica's removal must not delete the user's instance.
#[tokio::test]
async fn a_pool_sandbox_claimed_after_it_was_listed_as_stale_is_not_removed() {
    let app = crate::helpers::spawn_app().await;
    let claimed = app.ready_instance_row().await;
    assert_eq!(apply_guarded(&app, claimed, Op::Delete, Guard::Unowned).await, None);
    assert_eq!(status_of(&app, claimed).await, "ready", "the user's instance is left alone");
    let pooled = app.ready_instance_row().await;
    sqlx::query("UPDATE instances SET user_id = NULL, status = 'pooled' WHERE id = $1").bind(pooled).execute(&app.db).await.unwrap();
    assert_eq!(apply_guarded(&app, pooled, Op::Delete, Guard::Unowned).await.as_deref(), Some("deleting"), "a pool sandbox still nobody's goes");
}

/// A ready instance unused for two hours; what the idle policy read of it.
async fn idle_row(app: &TestApp) -> (uuid::Uuid, chrono::DateTime<chrono::Utc>) {
    let id = app.ready_instance_row().await;
    let seen = sqlx::query_scalar("UPDATE instances SET last_active_at = now() - interval '2 hours' WHERE id = $1 RETURNING last_active_at")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    (id, seen)
}

/// The idle policy found an instance idle; before it acts, another replica wakes it (a chat
/// resumed it) or its user pins it. Neither a stop nor a pause goes through then.
#[tokio::test]
async fn an_instance_woken_or_pinned_after_the_idle_policy_looked_is_left_running() {
    let app = crate::helpers::spawn_app().await;
    let (used, seen) = idle_row(&app).await;
    sqlx::query("UPDATE instances SET last_active_at = now() WHERE id = $1").bind(used).execute(&app.db).await.unwrap();
    for op in [Op::IdleStop, Op::IdlePause] {
        assert_eq!(apply_guarded(&app, used, op, Guard::IdleSince(seen)).await, None, "{op:?} of an instance used since");
    }
    let (pinned, seen) = idle_row(&app).await;
    sqlx::query("UPDATE instances SET keep_awake = true WHERE id = $1").bind(pinned).execute(&app.db).await.unwrap();
    assert_eq!(apply_guarded(&app, pinned, Op::IdleStop, Guard::IdleSince(seen)).await, None, "a stop of an instance pinned since");
    assert_eq!((status_of(&app, used).await, status_of(&app, pinned).await), ("ready".to_owned(), "ready".to_owned()));
    // Still idle as seen: the policy's stop goes through.
    let (idle, seen) = idle_row(&app).await;
    assert_eq!(apply_guarded(&app, idle, Op::IdleStop, Guard::IdleSince(seen)).await.as_deref(), Some("stopping"));
}

/// Two writers of one feed at once: the first holds its change uncommitted while the second
/// comes. A reader resuming by id (`Last-Event-ID`) meanwhile must not see the second's larger
/// id yet, or it would skip the first's for good (a message left "streaming" in its feed).
#[tokio::test]
async fn a_feed_never_shows_a_later_event_before_an_earlier_one() {
    use ocaas::chat::models::{MessageStatus, Role};
    use ocaas::chat::repo as chat;
    use ocaas::gateway::repo::agent;
    let app = crate::helpers::spawn_app().await;
    let id = app.ready_instance_row().await;
    let session = chat::insert_session_capped(&app.db, id, None, 10).await.unwrap().unwrap().id;
    let message =
        |content: &'static str| chat::insert_message(&app.db, uuid::Uuid::now_v7(), session, Role::Assistant, content, MessageStatus::Streaming);
    let (first, second) = (message("a").await.unwrap(), message("b").await.unwrap());
    let cursor = chat::last_event(&app.db, session).await.unwrap();

    let mut held = app.db.begin().await.unwrap();
    let early: i64 = sqlx::query_scalar("UPDATE chat_messages SET content = 'a!' WHERE id = $1 RETURNING event_id")
        .bind(first.id)
        .fetch_one(&mut *held)
        .await
        .unwrap();
    let db = app.db.clone();
    let late = tokio::spawn(async move { chat::update_message(&db, second.id, "b!", MessageStatus::Complete, None, None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = chat::changed_since(&app.db, session, cursor, 10).await.unwrap();
    assert!(seen.is_empty(), "a reader saw event {:?} while event {early} was not committed", seen.iter().map(|m| m.event_id).collect::<Vec<_>>());
    held.commit().await.unwrap();
    let late = late.await.unwrap().unwrap().event_id;
    let seen: Vec<i64> = chat::changed_since(&app.db, session, cursor, 10).await.unwrap().iter().map(|m| m.event_id).collect();
    assert_eq!(seen, vec![early, late]);

    // The agent feed (approvals, schedule runs) the same way.
    let cursor = agent::last_event(&app.db, id).await.unwrap();
    let mut held = app.db.begin().await.unwrap();
    let early: i64 =
        sqlx::query_scalar("INSERT INTO agent_events (instance_id, kind, dedupe, data) VALUES ($1, 'approval', 'one', '{}') RETURNING id")
            .bind(id)
            .fetch_one(&mut *held)
            .await
            .unwrap();
    let db = app.db.clone();
    let late = tokio::spawn(async move { agent::insert_event(&db, id, "approval", "two", &json!({})).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(agent::events_after(&app.db, id, cursor, 10).await.unwrap().is_empty(), "an agent event seen before event {early} was committed");
    held.commit().await.unwrap();
    late.await.unwrap().unwrap();
    let seen: Vec<i64> = agent::events_after(&app.db, id, cursor, 10).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!((seen.len(), seen[0]), (2, early));
}

/// A plan that lets a user pin one instance awake: pins of several instances sent at once (to
/// any replicas) leave exactly one pinned, the others refused with `keep_awake_limit`.
#[tokio::test]
async fn pins_sent_at_once_stay_within_the_plans_allowance() {
    let app = crate::helpers::spawn_app_with(|s| s.idle.keep_awake_max = 1).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(app.ready_instance_row().await);
    }
    let pin = |server: &TestApp, n: usize| server.api(Method::PATCH, &format!("/api/instances/{}", ids[n])).json(&json!({"keep_awake": true}));
    assert_eq!(statuses_at_once(&app, ids.len(), pin).await, [200, 403, 403, 403, 403, 403, 403, 403]);
    let pinned: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE keep_awake").fetch_one(&app.db).await.unwrap();
    assert_eq!(pinned, 1);
}

/// Webhook endpoints created at once (through two replicas) stop at the account's limit.
#[tokio::test]
async fn webhook_endpoints_created_at_once_stop_at_the_accounts_limit() {
    let app = crate::helpers::spawn_app_with(|s| s.webhook_allow_private = true).await;
    let limit = ocaas::webhooks::service::MAX_ENDPOINTS as usize;
    let create =
        |server: &TestApp, n: usize| server.api(Method::POST, "/api/account/webhooks").json(&json!({"url": format!("http://127.0.0.1:9/hook-{n}")}));
    let codes = statuses_at_once(&app, limit + 6, create).await;
    assert_eq!(codes, [vec![201; limit], vec![403; 6]].concat());
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, limit as i64);
}

/// Organisations created at once (through two replicas) stop at the most one user may have.
#[tokio::test]
async fn organisations_created_at_once_stop_at_the_most_a_user_may_have() {
    let app = crate::helpers::spawn_app().await;
    let most = ocaas::orgs::service::MAX_ORGS_PER_USER;
    let create = |server: &TestApp, n: usize| server.api(Method::POST, "/api/orgs").json(&json!({"name": format!("team {n}")}));
    assert_eq!(statuses_at_once(&app, most + 4, create).await, [vec![201; most], vec![400; 4]].concat());
}

/// One replica confirms a configuration on probation and the user patches again (a new
/// probation); a replica late to judge the first probation keeps nothing: the file it would
/// keep now is the new, unproven one, and a rollback must not come back to it.
#[tokio::test]
async fn a_replica_late_to_confirm_a_probation_keeps_no_unproven_configuration() {
    use ocaas::gateway::repo as gateway;
    let app = crate::helpers::spawn_app().await;
    let id = app.ready_instance_row().await;
    let pending = || async { gateway::probations(&app.db).await.unwrap().into_iter().find(|p| p.instance_id == id).map(|p| p.pending_until) };
    gateway::start_probation_after(&app.db, id, Duration::ZERO, Duration::from_secs(45)).await.unwrap();
    let first = pending().await.unwrap();
    assert!(gateway::confirm(&app.db, id, first, Some(b"proven".as_slice())).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    gateway::start_probation_after(&app.db, id, Duration::ZERO, Duration::from_secs(45)).await.unwrap();
    assert!(!gateway::confirm(&app.db, id, first, Some(b"unproven".as_slice())).await.unwrap(), "the first probation ended already");
    let kept: Vec<u8> =
        sqlx::query_scalar("SELECT last_good_sealed FROM gateway_configs WHERE instance_id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    assert_eq!(kept, b"proven");
    assert!(pending().await.is_some_and(|until| until > first), "the new probation runs on");
}
