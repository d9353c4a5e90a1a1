//! A chat stream on a stopped instance: the event stream is open at once and says
//! `status` `starting` while the instance starts, then carries the turn as usual. A start
//! that fails (or a turn that cannot begin) ends the stream with a `system_notification` and
//! `status` `error`, the way a failed turn does.

use std::convert::Infallible;

use axum::response::sse::Event;
use tokio::sync::mpsc;

use super::handlers::forward_turn;
use super::models::SendMessage;
use super::turn;
use super::wire::{ChatStreamEvent, NotificationData, TurnState};
use crate::instances::power::{self, Wake};
use crate::instances::repo::InstanceRow;
use crate::sse::to_sse;
use crate::state::AppState;

pub async fn start_then_forward(state: AppState, instance: InstanceRow, body: SendMessage, sink: mpsc::Sender<Result<Event, Infallible>>) {
    let _ = sink.send(to_sse(&ChatStreamEvent::status(TurnState::Starting, None))).await;
    let started = match power::awake(&state, instance, Wake::Start).await {
        Ok(instance) => turn::start(&state, &instance, body.session_id, &body.message).await,
        Err(error) => Err(error),
    };
    match started {
        Ok(started) => forward_turn(started, sink).await,
        Err(error) => {
            let message = error.into_message();
            let notice = NotificationData { level: "error".to_owned(), message: message.clone() };
            let _ = sink.send(to_sse(&ChatStreamEvent::SystemNotification(notice))).await;
            let _ = sink.send(to_sse(&ChatStreamEvent::status(TurnState::Error, Some(message)))).await;
        }
    }
}
