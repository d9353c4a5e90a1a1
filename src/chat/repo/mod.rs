//! SQL for chat sessions and messages.

pub mod imports;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use sqlx::types::Json;

use super::models::{MessageStatus, Role, SessionOrigin};
use super::tools::ToolStep;

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub title: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    pub message_count: i64,
    pub origin: SessionOrigin,
    /// The session's key on the gateway when it is not the session id (imported sessions).
    pub gateway_key: Option<String>,
    /// The assistant message of the turn running in it.
    pub active_turn: Option<Uuid>,
}

impl SessionRow {
    /// The key the gateway knows this session by.
    pub fn gateway_key(&self) -> String {
        self.gateway_key.clone().unwrap_or_else(|| self.id.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: Uuid,
    pub session_id: Uuid,
    pub seq: i64,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    pub error: Option<String>,
    pub tools: Json<Vec<ToolStep>>,
    pub event_id: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A message `start_turn` wrote, with the key the gateway knows its session by.
pub struct StartedRow {
    pub id: Uuid,
    pub session_id: Uuid,
    pub seq: i64,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    pub error: Option<String>,
    pub tools: Json<Vec<ToolStep>>,
    pub event_id: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub session_key: String,
}

impl StartedRow {
    pub fn split(self) -> (MessageRow, String) {
        let StartedRow { id, session_id, seq, role, content, status, error, tools, event_id, created_at, updated_at, session_key } = self;
        (MessageRow { id, session_id, seq, role, content, status, error, tools, event_id, created_at, updated_at }, session_key)
    }
}

pub async fn insert_session(db: impl PgExecutor<'_>, instance_id: Uuid, title: Option<&str>) -> sqlx::Result<SessionRow> {
    sqlx::query_as!(
        SessionRow,
        r#"INSERT INTO chat_sessions (id, instance_id, title) VALUES ($1, $2, $3)
           RETURNING id, instance_id, title, created_at, last_activity_at, 0::bigint AS "message_count!",
                     origin AS "origin: SessionOrigin", gateway_key, active_turn"#,
        Uuid::now_v7(),
        instance_id,
        title
    )
    .fetch_one(db)
    .await
}

/// Like `insert_session`, unless the instance has `max` sessions already (then `None`).
pub async fn insert_session_capped(db: impl PgExecutor<'_>, instance_id: Uuid, title: Option<&str>, max: i64) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as!(
        SessionRow,
        r#"INSERT INTO chat_sessions (id, instance_id, title)
           SELECT $1, $2, $3 WHERE (SELECT count(*) FROM chat_sessions WHERE instance_id = $2) < $4
           RETURNING id, instance_id, title, created_at, last_activity_at, 0::bigint AS "message_count!",
                     origin AS "origin: SessionOrigin", gateway_key, active_turn"#,
        Uuid::now_v7(),
        instance_id,
        title,
        max
    )
    .fetch_optional(db)
    .await
}

pub async fn list_sessions(db: &PgPool, instance_id: Uuid) -> sqlx::Result<Vec<SessionRow>> {
    sqlx::query_as!(
        SessionRow,
        r#"SELECT s.id, s.instance_id, s.title, s.created_at, s.last_activity_at,
                  (SELECT count(*) FROM chat_messages m WHERE m.session_id = s.id) AS "message_count!",
                  s.origin AS "origin: SessionOrigin", s.gateway_key, s.active_turn
           FROM chat_sessions s WHERE s.instance_id = $1 ORDER BY s.last_activity_at DESC, s.id DESC"#,
        instance_id
    )
    .fetch_all(db)
    .await
}

pub async fn session(db: impl PgExecutor<'_>, instance_id: Uuid, id: Uuid) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as!(
        SessionRow,
        r#"SELECT s.id, s.instance_id, s.title, s.created_at, s.last_activity_at,
                  (SELECT count(*) FROM chat_messages m WHERE m.session_id = s.id) AS "message_count!",
                  s.origin AS "origin: SessionOrigin", s.gateway_key, s.active_turn
           FROM chat_sessions s WHERE s.instance_id = $1 AND s.id = $2"#,
        instance_id,
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn latest_session(db: impl PgExecutor<'_>, instance_id: Uuid) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as!(
        SessionRow,
        r#"SELECT s.id, s.instance_id, s.title, s.created_at, s.last_activity_at,
                  (SELECT count(*) FROM chat_messages m WHERE m.session_id = s.id) AS "message_count!",
                  s.origin AS "origin: SessionOrigin", s.gateway_key, s.active_turn
           FROM chat_sessions s WHERE s.instance_id = $1 ORDER BY s.last_activity_at DESC, s.id DESC LIMIT 1"#,
        instance_id
    )
    .fetch_optional(db)
    .await
}

pub async fn release_turn(db: &PgPool, session_id: Uuid, assistant_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE chat_sessions SET active_turn = NULL, last_activity_at = now() WHERE id = $1 AND active_turn = $2",
        session_id,
        assistant_id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Starts a turn in one statement (one round trip before the gateway is called): claims the
/// session, then appends the user's message and the empty assistant message (`assistant_id`)
/// at the next two sequence numbers, the user's first (rows and event ids in that order).
/// Without `session_id`, the instance's most recently active session. Empty when there is no
/// such session or a turn is already running in it.
///
/// Committed without waiting for the disk (`synchronous_commit` off for this one transaction;
/// the flush took 0.4–2.8 ms of every turn's first token here): other processes see the claim at
/// once all the same, and the turn's end (`update_message`, a normal commit) flushes it with
/// everything before it. Only a database crash within its WAL writer's delay (≤ 0.6 s) of the
/// start of a turn can lose that start — a turn the client then sees fail.
pub async fn start_turn(
    db: &PgPool,
    instance_id: Uuid,
    session_id: Option<Uuid>,
    user_id: Uuid,
    assistant_id: Uuid,
    text: &str,
) -> sqlx::Result<Vec<StartedRow>> {
    sqlx::query_as!(
        StartedRow,
        r#"WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true) AS done),
           claimed AS (
               UPDATE chat_sessions SET active_turn = $3, last_activity_at = now(), next_seq = next_seq + 2
               WHERE instance_id = $1 AND active_turn IS NULL AND id = COALESCE($2, (
                   SELECT latest.id FROM chat_sessions latest WHERE latest.instance_id = $1
                   ORDER BY latest.last_activity_at DESC, latest.id DESC LIMIT 1))
                 AND (SELECT done FROM relaxed) IS NOT NULL
               RETURNING id, next_seq - 2 AS seq, COALESCE(gateway_key, id::text) AS key),
           inserted AS (
           INSERT INTO chat_messages (id, session_id, seq, role, content, status, gateway_ref)
           SELECT m.id, claimed.id, claimed.seq + m.n, m.role, m.content, m.status, m.ref || $3::text
           FROM claimed, (VALUES (0, $4::uuid, 'user', $5::text, 'complete', 'user:'), (1, $3::uuid, 'assistant', '', 'streaming', 'run:'))
                AS m (n, id, role, content, status, ref)
           ORDER BY m.n
           RETURNING *)
           SELECT i.id AS "id!", i.session_id AS "session_id!", i.seq AS "seq!", i.role AS "role!: Role", i.content AS "content!",
                  i.status AS "status!: MessageStatus", i.error, i.tools AS "tools!: Json<Vec<ToolStep>>", i.event_id AS "event_id!",
                  i.created_at AS "created_at!", i.updated_at AS "updated_at!", (SELECT key FROM claimed) AS "session_key!"
           FROM inserted i ORDER BY i.seq"#,
        instance_id,
        session_id,
        assistant_id,
        user_id,
        text
    )
    .fetch_all(db)
    .await
}

/// Appends a message at the session's next sequence number.
pub async fn insert_message(
    db: impl PgExecutor<'_>,
    id: Uuid,
    session_id: Uuid,
    role: Role,
    content: &str,
    status: MessageStatus,
) -> sqlx::Result<MessageRow> {
    sqlx::query_as!(
        MessageRow,
        r#"WITH next AS (UPDATE chat_sessions SET next_seq = next_seq + 1 WHERE id = $2 RETURNING next_seq - 1 AS seq)
         INSERT INTO chat_messages (id, session_id, seq, role, content, status)
         SELECT $1, $2, next.seq, $3, $4, $5 FROM next
         RETURNING id, session_id, seq, role AS "role: Role", content, status AS "status: MessageStatus", error, tools AS "tools: Json<Vec<ToolStep>>", event_id, created_at, updated_at"#,
        id,
        session_id,
        role as Role,
        content,
        status as MessageStatus
    )
    .fetch_one(db)
    .await
}

/// Writes a message's content and status, and its tool steps when given (else they stay).
pub async fn update_message(
    db: &PgPool,
    id: Uuid,
    content: &str,
    status: MessageStatus,
    error: Option<&str>,
    tools: Option<&[ToolStep]>,
) -> sqlx::Result<MessageRow> {
    let tools = tools.map(Json);
    sqlx::query_as!(
        MessageRow,
        r#"UPDATE chat_messages SET content = $2, status = $3, error = $4, tools = COALESCE($5, tools) WHERE id = $1
         RETURNING id, session_id, seq, role AS "role: Role", content, status AS "status: MessageStatus", error, tools AS "tools: Json<Vec<ToolStep>>", event_id, created_at, updated_at"#,
        id,
        content,
        status as MessageStatus,
        error,
        tools as Option<Json<&[ToolStep]>>
    )
    .fetch_one(db)
    .await
}

pub async fn message(db: &PgPool, session_id: Uuid, id: Uuid) -> sqlx::Result<Option<MessageRow>> {
    sqlx::query_as!(
        MessageRow,
        r#"SELECT id, session_id, seq, role AS "role: Role", content, status AS "status: MessageStatus", error, tools AS "tools: Json<Vec<ToolStep>>", event_id, created_at, updated_at
         FROM chat_messages WHERE session_id = $1 AND id = $2"#,
        session_id,
        id
    )
    .fetch_optional(db)
    .await
}

/// Messages with `seq > after_seq`: the first `limit`, or with `tail` the last `limit`; always
/// returned in chronological order.
pub async fn history(db: &PgPool, session_id: Uuid, after_seq: i64, limit: i64, tail: bool) -> sqlx::Result<Vec<MessageRow>> {
    sqlx::query_as!(
        MessageRow,
        r#"SELECT id AS "id!", session_id AS "session_id!", seq AS "seq!", role AS "role!: Role", content AS "content!",
                  status AS "status!: MessageStatus", error, tools AS "tools!: Json<Vec<ToolStep>>", event_id AS "event_id!", created_at AS "created_at!", updated_at AS "updated_at!"
           FROM (SELECT * FROM chat_messages WHERE session_id = $1 AND seq > $2
                 ORDER BY CASE WHEN $4 THEN -seq ELSE seq END LIMIT $3) picked
           ORDER BY seq"#,
        session_id,
        after_seq,
        limit,
        tail
    )
    .fetch_all(db)
    .await
}

/// Up to `limit` messages of the session changed after event `after_event`, oldest change first.
pub async fn changed_since(db: &PgPool, session_id: Uuid, after_event: i64, limit: i64) -> sqlx::Result<Vec<MessageRow>> {
    sqlx::query_as!(
        MessageRow,
        r#"SELECT id, session_id, seq, role AS "role: Role", content, status AS "status: MessageStatus", error, tools AS "tools: Json<Vec<ToolStep>>", event_id, created_at, updated_at
         FROM chat_messages WHERE session_id = $1 AND event_id > $2 ORDER BY event_id LIMIT $3"#,
        session_id,
        after_event,
        limit
    )
    .fetch_all(db)
    .await
}

pub async fn last_event(db: &PgPool, session_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT coalesce(max(event_id), 0) AS "last!" FROM chat_messages WHERE session_id = $1"#, session_id).fetch_one(db).await
}

/// Finalises messages whose turn stopped making progress (a crashed server) and frees their sessions.
pub async fn interrupt_stale_turns(db: &PgPool, stale_secs: f64) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "WITH stale AS (
             UPDATE chat_messages SET status = 'error', error = 'interrupted'
             WHERE status = 'streaming' AND updated_at < now() - make_interval(secs => $1)
             RETURNING id, session_id)
         UPDATE chat_sessions s SET active_turn = NULL FROM stale WHERE s.id = stale.session_id AND s.active_turn = stale.id",
        stale_secs
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
