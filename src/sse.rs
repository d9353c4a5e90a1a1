//! Server-sent events written from typed events: each stream's events are one enum,
//! serialized adjacently tagged (`{"event": name, "data": …}`), which is what an SSE frame
//! carries. The OpenAPI document lists the same enums as each stream's `x-sse-events`
//! (`docs::sse`), so what is sent and what is documented come from one type.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::mpsc;

type BoxedEvents = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;
/// An event stream response.
pub type EventStream = Sse<KeepAliveStream<BoxedEvents>>;

/// An SSE response fed by `receiver`, holding `open` (the user's stream slot, the metrics
/// gauge, the instance's use) while the client reads it; a comment every 15 s keeps proxies
/// from closing it.
pub fn response(receiver: mpsc::Receiver<Result<Event, Infallible>>, open: impl Send + 'static) -> EventStream {
    let stream = futures_util::stream::unfold((receiver, open), |(mut rx, open)| async move { rx.recv().await.map(|event| (event, (rx, open))) });
    Sse::new(Box::pin(stream) as BoxedEvents).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}

/// The SSE frame of a typed event: its tag as `event:`, its content as `data:` JSON.
pub fn to_sse(event: &impl Serialize) -> Result<Event, Infallible> {
    let value = serde_json::to_value(event).unwrap_or_default();
    let name = value["event"].as_str().unwrap_or("message");
    Ok(Event::default().event(name).data(value["data"].to_string()))
}
