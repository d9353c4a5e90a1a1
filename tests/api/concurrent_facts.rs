//! Facts about an instance that several callers (replicas, the dashboard's parallel requests)
//! write at once, against the real database: each caller gets the one row stored, never an
//! error or nothing. A statement's own reads see neither the row its `INSERT` makes nor one
//! another transaction commits meanwhile, so these are the races to test.

use std::time::Duration;

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
