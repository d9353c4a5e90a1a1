//! A chat turn over the gateway's HTTP door (`/v1/chat/completions`, SSE): the fallback for a
//! gateway that does not speak the WebSocket protocol. Only text comes this way; a stop ends
//! the request (the gateway sees the client go away).

use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::gateway::{self, GatewayError, GatewayEvent};
use super::models::MessageStatus;
use super::repo;
use super::turn::{Ending, HEARTBEAT, Job, Progress, TurnEvent};

const CONNECT_ATTEMPTS: u32 = 3;

impl Job {
    pub(super) async fn converse_http(&self, progress: &mut Progress, abort: &CancellationToken) -> Result<Ending, String> {
        let mut stream = tokio::select! {
            connected = self.connect() => connected?,
            () = abort.cancelled() => return Ok(Ending::Aborted),
        };
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(HEARTBEAT, stream.next()) => next,
                () = abort.cancelled() => return Ok(Ending::Aborted),
            };
            let event = match next {
                Err(_) => {
                    // No news from the agent: touch the message so it is not taken for abandoned.
                    let _ = repo::update_message(&self.db, self.assistant.id, &progress.content, MessageStatus::Streaming, None, None).await;
                    continue;
                }
                Ok(None) => return Err("the agent gateway closed the stream before finishing".into()),
                Ok(Some(event)) => event.map_err(|e| e.to_string())?,
            };
            match event {
                GatewayEvent::Done => return Ok(Ending::Complete),
                GatewayEvent::Delta(delta) => self.delta(progress, &delta).await?,
            }
        }
    }

    async fn connect(&self) -> Result<impl futures_util::Stream<Item = Result<GatewayEvent, GatewayError>> + use<>, String> {
        let mut attempt = 1;
        loop {
            let sandbox = &self.instance.sandbox_id;
            let turn = gateway::Turn {
                runtime: self.runtime.as_ref(),
                sandbox,
                token: &self.instance.gateway_token,
                session_key: &self.session_key,
                message: &self.text,
            };
            match gateway::stream_turn(turn).await {
                Ok(stream) => return Ok(stream),
                Err(GatewayError::Unreachable(reason)) if attempt < CONNECT_ATTEMPTS => {
                    self.emit(TurnEvent::Notice {
                        level: "warning",
                        message: format!("The agent is not reachable yet ({reason}); retrying ({attempt}/{}).", CONNECT_ATTEMPTS - 1),
                    });
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}
