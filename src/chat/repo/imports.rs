//! SQL for turns imported from the gateway (made on its own UI, channels or schedules): their
//! sessions are found or made by the gateway's key, their messages are written by the run they
//! belong to (`gateway_ref`), so an import repeated by a reconnect or another replica changes
//! nothing.

use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use super::{MessageRow, SessionRow};
use crate::chat::models::{MessageStatus, Role, SessionOrigin};
use crate::chat::tools::ToolStep;

/// The imported session with this gateway key, made if there is none yet (`None` when it is
/// new and the instance has `max` sessions already). The row comes from `RETURNING`: the
/// statement's own reads see neither the row its `INSERT` makes nor one another replica made
/// meanwhile.
pub async fn gateway_session(db: &PgPool, instance_id: Uuid, key: &str, max: i64) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as!(
        SessionRow,
        r#"WITH made AS (
               INSERT INTO chat_sessions (id, instance_id, title, gateway_key, origin)
               SELECT $1, $2, $3, $3, 'gateway'
                WHERE (SELECT count(*) FROM chat_sessions WHERE instance_id = $2) < $4
                   OR EXISTS (SELECT 1 FROM chat_sessions WHERE instance_id = $2 AND gateway_key = $3)
               ON CONFLICT (instance_id, gateway_key) WHERE gateway_key IS NOT NULL DO UPDATE SET last_activity_at = now()
               RETURNING id, instance_id, title, created_at, last_activity_at, origin, gateway_key, active_turn)
           SELECT s.id AS "id!", s.instance_id AS "instance_id!", s.title, s.created_at AS "created_at!",
                  s.last_activity_at AS "last_activity_at!",
                  (SELECT count(*) FROM chat_messages m WHERE m.session_id = s.id) AS "message_count!",
                  s.origin AS "origin!: SessionOrigin", s.gateway_key, s.active_turn
           FROM made s"#,
        uuid::Uuid::now_v7(),
        instance_id,
        key,
        max
    )
    .fetch_optional(db)
    .await
}

/// Sessions of the instance active within `minutes` (what a reload after lost events looks at).
pub async fn recent_sessions(db: &PgPool, instance_id: Uuid, minutes: i32, limit: i64) -> sqlx::Result<Vec<(Uuid, String)>> {
    let rows = sqlx::query!(
        r#"SELECT id, COALESCE(gateway_key, id::text) AS "key!" FROM chat_sessions
           WHERE instance_id = $1 AND last_activity_at > now() - make_interval(mins => $2)
           ORDER BY last_activity_at DESC LIMIT $3"#,
        instance_id,
        minutes,
        limit
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.key)).collect())
}

/// Writes the message the gateway's run `gateway_ref` made: inserted if new, else updated
/// unless it is an ocaas turn's own message (whose id is the run id: its turn writes it) or
/// nothing changed. The row when something was written.
#[allow(clippy::too_many_arguments)]
pub async fn put_message(
    db: &PgPool,
    session_id: Uuid,
    gateway_ref: &str,
    own_id: &str,
    role: Role,
    content: &str,
    status: MessageStatus,
    tools: &[ToolStep],
) -> sqlx::Result<Option<MessageRow>> {
    let updated = sqlx::query_as!(
        MessageRow,
        r#"UPDATE chat_messages SET content = $3, status = $4, tools = $5
           WHERE session_id = $1 AND gateway_ref = $2 AND id::text <> $6 AND status <> 'complete'
             AND (content, status, tools) IS DISTINCT FROM ($3, $4, $5)
           RETURNING id, session_id, seq, role AS "role: Role", content, status AS "status: MessageStatus", error, tools AS "tools: Json<Vec<ToolStep>>", event_id, created_at, updated_at"#,
        session_id,
        gateway_ref,
        content,
        status as MessageStatus,
        Json(tools) as Json<&[ToolStep]>,
        own_id
    )
    .fetch_optional(db)
    .await?;
    if updated.is_some() {
        return Ok(updated);
    }
    sqlx::query_as!(
        MessageRow,
        r#"WITH fresh AS (SELECT NOT EXISTS (SELECT 1 FROM chat_messages WHERE session_id = $2 AND gateway_ref = $7) AS yes),
           next AS (UPDATE chat_sessions SET next_seq = next_seq + 1, last_activity_at = now()
                    WHERE id = $2 AND (SELECT yes FROM fresh) RETURNING next_seq - 1 AS seq)
           INSERT INTO chat_messages (id, session_id, seq, role, content, status, tools, gateway_ref)
           SELECT $1, $2, next.seq, $3, $4, $5, $6, $7 FROM next
           ON CONFLICT (session_id, gateway_ref) WHERE gateway_ref IS NOT NULL DO NOTHING
           RETURNING id, session_id, seq, role AS "role: Role", content, status AS "status: MessageStatus", error, tools AS "tools: Json<Vec<ToolStep>>", event_id, created_at, updated_at"#,
        Uuid::now_v7(),
        session_id,
        role as Role,
        content,
        status as MessageStatus,
        Json(tools) as Json<&[ToolStep]>,
        gateway_ref
    )
    .fetch_optional(db)
    .await
}

/// Which of `refs` the session holds already.
pub async fn known_refs(db: &PgPool, session_id: Uuid, refs: &[String]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT gateway_ref AS "gateway_ref!" FROM chat_messages WHERE session_id = $1 AND gateway_ref = ANY($2)"#,
        session_id,
        refs
    )
    .fetch_all(db)
    .await
}
