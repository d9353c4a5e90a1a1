//! Turns made on the gateway without ocaas (the agent's own UI, its channels and schedules, or a
//! run another replica drives) become part of ocaas's history as they happen: the gateway's
//! `chat` events of runs nobody here asked for start and grow a streaming message, and the
//! run's end (or any sign that events were lost) reloads the session from `chat.history`.
//! Every write names the run it comes from (`gateway_ref`), so repeats change nothing.
//!
//! The keeper holds a connection to every ready instance, so those events are heard at all.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::handlers::MAX_SESSIONS;
use super::models::{MessageStatus, Role, SessionOrigin};
use super::repo::{self, SessionRow, imports};
use super::tools;
use crate::gateway::Link;
use crate::instances::repo::InstanceRow;
use crate::runtime::gateway::frames::{HistoryMessage, text_of};
use crate::runtime::gateway::{Foreign, history};
use crate::state::AppState;

/// A growing foreign answer is written at most this often.
const WRITE_EVERY: Duration = Duration::from_millis(250);
/// Reloads of one instance after lost events are at least this far apart.
const RESYNC_EVERY: Duration = Duration::from_secs(2);
const KEEP_EVERY: Duration = Duration::from_secs(5);
/// Runs remembered (beyond it the oldest are forgotten).
const REMEMBERED: usize = 4096;
const HISTORY_PAGE: u32 = 200;

pub fn spawn(state: &AppState) {
    if state.settings.gateway_protocol == crate::config::GatewayProtocol::Http {
        return;
    }
    let Some(mut feed) = state.gateways.take_foreign() else { return };
    let mut importer = Importer { db: state.db.clone(), link: Link::of(state), runs: HashMap::new(), resynced: HashMap::new() };
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                event = feed.recv() => match event {
                    Some(event) => importer.handle(event).await,
                    None => return,
                },
            }
        }
    });
    let (db, link, shutdown) = (state.db.clone(), Link::of(state), state.shutdown.clone());
    tokio::spawn(async move {
        loop {
            if let Err(error) = keep(&db, &link).await {
                tracing::warn!(%error, "gateway keeper");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(KEEP_EVERY) => {}
            }
        }
    });
}

/// Opens a connection to each ready instance and closes those of instances no longer ready.
async fn keep(db: &sqlx::PgPool, link: &Link) -> sqlx::Result<()> {
    let ready: HashSet<Uuid> = crate::gateway::repo::ready_instances(db).await?.into_iter().collect();
    for id in link.hub.open_ids() {
        if !ready.contains(&id) {
            link.hub.close(id);
        }
    }
    let open: HashSet<Uuid> = link.hub.open_ids().into_iter().collect();
    for id in ready.difference(&open) {
        if let Some(instance) = crate::instances::repo::get(db, *id).await? {
            // Opens it in the background; the answer does not matter here.
            let _ = link.connection(&instance, Duration::ZERO).await;
        }
    }
    Ok(())
}

struct Importer {
    db: sqlx::PgPool,
    link: Link,
    /// Foreign runs seen, with when their message was last written.
    runs: HashMap<String, Instant>,
    resynced: HashMap<Uuid, Instant>,
}

impl Importer {
    async fn handle(&mut self, event: Foreign) {
        let result = match event {
            Foreign::Chat { instance_id, session_key, run_id, text, ended } => self.chat(instance_id, &session_key, &run_id, &text, ended).await,
            Foreign::Resync { instance_id } => self.resync(instance_id).await,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "importing from the gateway");
        }
    }

    async fn chat(&mut self, instance_id: Uuid, key: &str, run_id: &str, text: &str, ended: bool) -> Result<(), String> {
        let seen = self.runs.get(run_id).copied();
        if !ended && seen.is_some_and(|at| at.elapsed() < WRITE_EVERY) {
            return Ok(());
        }
        let Some(instance) = crate::instances::repo::get(&self.db, instance_id).await.map_err(|e| e.to_string())? else { return Ok(()) };
        let Some(session) = self.session(&instance, key).await? else { return Ok(()) };
        if session.active_turn.is_some_and(|turn| turn.to_string() == run_id) {
            // An ocaas turn another replica drives: that replica writes it.
            return Ok(());
        }
        remember(&mut self.runs, run_id.to_owned(), Instant::now());
        if seen.is_none() || ended {
            self.sync(&instance, &session, key, Some(run_id)).await?;
        }
        if !ended {
            let gateway_ref = format!("run:{run_id}");
            imports::put_message(&self.db, session.id, &gateway_ref, run_id, Role::Assistant, text, MessageStatus::Streaming, &[])
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The ocaas session the gateway's key names: one of ocaas's own (the key is its id), or
    /// the imported one with that key (made if needed).
    async fn session(&self, instance: &InstanceRow, key: &str) -> Result<Option<SessionRow>, String> {
        let own = key.rsplit(':').next().and_then(|k| k.parse::<Uuid>().ok());
        if let Some(id) = own
            && let Some(session) = repo::session(&self.db, instance.id, id).await.map_err(|e| e.to_string())?
        {
            return Ok(Some(session));
        }
        imports::gateway_session(&self.db, instance.id, key, MAX_SESSIONS).await.map_err(|e| e.to_string())
    }

    async fn resync(&mut self, instance_id: Uuid) -> Result<(), String> {
        if self.resynced.get(&instance_id).is_some_and(|at| at.elapsed() < RESYNC_EVERY) {
            return Ok(());
        }
        self.resynced.insert(instance_id, Instant::now());
        let Some(instance) = crate::instances::repo::get(&self.db, instance_id).await.map_err(|e| e.to_string())? else { return Ok(()) };
        for (session_id, key) in imports::recent_sessions(&self.db, instance_id, 10, 20).await.map_err(|e| e.to_string())? {
            if let Some(session) = repo::session(&self.db, instance_id, session_id).await.map_err(|e| e.to_string())? {
                self.sync(&instance, &session, &key, None).await?;
            }
        }
        Ok(())
    }

    /// Writes what the gateway's transcript of `key` holds and ocaas does not: in a session of
    /// ocaas's own, `run` alone, or (after lost events) the turns after the last one ocaas knows
    /// (older ones may be ocaas's own, from before it named its messages by run).
    async fn sync(&self, instance: &InstanceRow, session: &SessionRow, key: &str, run: Option<&str>) -> Result<(), String> {
        let connection = self.link.connection(instance, Duration::from_secs(5)).await.map_err(|e| e.to_string())?;
        let transcript = history(&connection, key, HISTORY_PAGE).await.map_err(|e| e.to_string())?;
        let active = transcript.session_info.active_run_ids;
        let mut turns = turns(&transcript.messages);
        if session.origin == SessionOrigin::Api {
            match run {
                Some(run) => turns.retain(|t| t.run_id == run),
                None => {
                    let refs: Vec<String> = turns.iter().map(|t| format!("run:{}", t.run_id)).collect();
                    let known = imports::known_refs(&self.db, session.id, &refs).await.map_err(|e| e.to_string())?;
                    match refs.iter().rposition(|r| known.contains(r)) {
                        Some(last) => drop(turns.drain(..=last)),
                        None if session.message_count > 0 => turns.clear(),
                        None => {}
                    }
                }
            }
        }
        for turn in turns {
            // ocaas's own HTTP turns (`chatcmpl_…` runs) are in its history already.
            if turn.run_id.starts_with("chatcmpl_") || session.active_turn.is_some_and(|t| t.to_string() == turn.run_id) {
                continue;
            }
            let db = &self.db;
            if let Some(user) = turn.user {
                let text = text_of(&user.content);
                imports::put_message(db, session.id, &format!("user:{}", turn.run_id), &turn.run_id, Role::User, &text, MessageStatus::Complete, &[])
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if turn.rest.is_empty() {
                continue;
            }
            let text = turn
                .rest
                .iter()
                .filter(|m| m.role == "assistant")
                .map(|m| text_of(&m.content))
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("\n\n");
            let steps = tools::from_transcript(&turn.rest);
            let aborted = turn.rest.iter().rev().find(|m| m.role == "assistant").is_some_and(|m| m.stop_reason.as_deref() == Some("aborted"));
            let status = if active.contains(&turn.run_id) {
                MessageStatus::Streaming
            } else if aborted {
                MessageStatus::Aborted
            } else {
                MessageStatus::Complete
            };
            imports::put_message(db, session.id, &format!("run:{}", turn.run_id), &turn.run_id, Role::Assistant, &text, status, &steps)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn remember(runs: &mut HashMap<String, Instant>, run: String, at: Instant) {
    if runs.len() >= REMEMBERED {
        runs.retain(|_, seen| seen.elapsed() < Duration::from_secs(600));
        if runs.len() >= REMEMBERED {
            runs.clear();
        }
    }
    runs.insert(run, at);
}

/// A turn of the transcript: a user message and what followed it until the next one.
struct Turn<'a> {
    run_id: String,
    user: Option<&'a HistoryMessage>,
    rest: Vec<HistoryMessage>,
}

fn turns(messages: &[HistoryMessage]) -> Vec<Turn<'_>> {
    let mut out: Vec<Turn> = Vec::new();
    for message in messages {
        if message.role == "user" || out.is_empty() {
            let user = (message.role == "user").then_some(message);
            out.push(Turn { run_id: message.run_id().unwrap_or("").to_owned(), user, rest: Vec::new() });
            if user.is_some() {
                continue;
            }
        }
        let turn = out.last_mut().expect("a turn was pushed");
        // The turn is the run of its answer (an HTTP turn's user message has another key).
        if turn.rest.is_empty()
            && let Some(run) = message.run_id()
        {
            turn.run_id = run.to_owned();
        }
        turn.rest.push(message.clone());
    }
    out.retain(|t| !t.run_id.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The captured transcript (71): two HTTP turns, then one WS turn with a tool step.
    #[test]
    fn the_captured_transcript_splits_into_its_turns() {
        let text = include_str!("../../tests/fixtures/gateway/71_ws_tool_run_shared_http_session.frames.jsonl");
        let raw = text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|r| r["dir"] == "recv").find_map(|r| {
            let frame: serde_json::Value = serde_json::from_str(r["raw"].as_str()?).ok()?;
            frame["payload"].get("messages").cloned()
        });
        let messages: Vec<HistoryMessage> = serde_json::from_value(raw.unwrap()).unwrap();
        let turns = turns(&messages);
        assert_eq!(turns.len(), 3);
        assert!(turns[0].run_id.starts_with("chatcmpl_") && turns[1].run_id.starts_with("chatcmpl_"));
        assert_eq!(turns[2].run_id, "d27298f0-cd9a-4325-a813-d0132e5766d4");
        let steps = tools::from_transcript(&turns[2].rest);
        assert_eq!((steps.len(), steps[0].name.as_str(), steps[0].output.as_str()), (1, "exec", "hi"));
        assert_eq!(steps[0].status, tools::ToolStatus::Completed);
    }
}
