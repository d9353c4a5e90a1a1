//! Server-sent events written from typed events: each stream's events are one enum,
//! serialized adjacently tagged (`{"event": name, "data": …}`), which is what an SSE frame
//! carries. The OpenAPI document lists the same enums as each stream's `x-sse-events`
//! (`docs::sse`), so what is sent and what is documented come from one type.

use std::convert::Infallible;

use axum::response::sse::Event;
use serde::Serialize;

/// The SSE frame of a typed event: its tag as `event:`, its content as `data:` JSON.
pub fn to_sse(event: &impl Serialize) -> Result<Event, Infallible> {
    let value = serde_json::to_value(event).unwrap_or_default();
    let name = value["event"].as_str().unwrap_or("message");
    Ok(Event::default().event(name).data(value["data"].to_string()))
}
