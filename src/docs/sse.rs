//! The events of each event stream in the OpenAPI document. OpenAPI 3.1 has no place for the
//! items of `text/event-stream`, so each stream's `text/event-stream` content names its events'
//! schema in `x-sse-events`: the very enum the server writes its frames from (`crate::sse`),
//! whose `{event, data}` form is one frame's `event:` and `data:` (JSON).

use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::{OpenApi, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::chat::wire::{ChatFeedEvent, ChatStreamEvent};
use crate::gateway::feed::AgentFeedEvent;
use crate::instances::logs::LogEvent;

/// (path, method, the events' schema name, the schemas to register).
type Stream = (&'static str, &'static str, String, Vec<(String, RefOr<Schema>)>);

fn stream<T: ToSchema>(path: &'static str, method: &'static str) -> Stream {
    let mut schemas = vec![(T::name().into_owned(), <T as PartialSchema>::schema())];
    T::schemas(&mut schemas);
    (path, method, T::name().into_owned(), schemas)
}

pub fn add_events(openapi: &mut OpenApi) {
    let streams = [
        stream::<ChatStreamEvent>("/api/instances/{instanceId}/chat/stream", "post"),
        stream::<ChatFeedEvent>("/api/instances/{instanceId}/chat/events", "get"),
        stream::<LogEvent>("/api/instances/{instanceId}/logs", "get"),
        stream::<AgentFeedEvent>("/api/instances/{instanceId}/agent/events", "get"),
    ];
    for (path, method, name, schemas) in streams {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (schema_name, schema) in schemas {
            components.schemas.entry(schema_name).or_insert(schema);
        }
        let Some(item) = openapi.paths.paths.get_mut(path) else { continue };
        let operation = match method {
            "get" => item.get.as_mut(),
            _ => item.post.as_mut(),
        };
        let Some(RefOr::T(ok)) = operation.and_then(|op| op.responses.responses.get_mut("200")) else { continue };
        if let Some(RefOr::T(content)) = ok.content.get_mut("text/event-stream") {
            let events = serde_json::json!({"$ref": format!("#/components/schemas/{name}")});
            content.extensions.get_or_insert_with(Default::default).merge(ExtensionsBuilder::new().add("x-sse-events", events).build());
        }
    }
}
