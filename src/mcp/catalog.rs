//! The MCP tools: each one API operation, its input schema written from that operation in the
//! OpenAPI document (path and query parameters, JSON body fields — the same types, so the two
//! cannot drift), arguments named as in the API (`instanceId` → `instance_id`).

use std::sync::Arc;

use axum::http::Method;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

/// One tool: the operation it runs and what it is for.
pub struct ToolDef {
    pub name: &'static str,
    pub method: Method,
    /// The route template, as in the OpenAPI document.
    pub path: &'static str,
    pub description: &'static str,
    pub read_only: bool,
    pub destructive: bool,
}

const fn tool(name: &'static str, method: Method, path: &'static str, description: &'static str, read_only: bool, destructive: bool) -> ToolDef {
    ToolDef { name, method, path, description, read_only, destructive }
}

/// The tools, in the order they are listed.
pub const TOOLS: &[ToolDef] = &[
    tool("list_instances", Method::GET, "/api/instances", "List your instances: id, name, status.", true, false),
    tool(
        "create_instance",
        Method::POST,
        "/api/instances",
        "Create an instance (a sandbox running the OpenClaw agent, with /workspace). It answers at once with status `provisioning` (or `ready` from the warm pool); call get_instance until it is `ready`.",
        false,
        false,
    ),
    tool("get_instance", Method::GET, "/api/instances/{instanceId}", "An instance: status, image, limits, when it was last used.", true, false),
    tool("start_instance", Method::POST, "/api/instances/{instanceId}/start", "Start a stopped instance.", false, false),
    tool("stop_instance", Method::POST, "/api/instances/{instanceId}/shutdown", "Stop an instance (its files stay).", false, false),
    tool("reboot_instance", Method::POST, "/api/instances/{instanceId}/reboot", "Restart an instance's sandbox.", false, false),
    tool("delete_instance", Method::DELETE, "/api/instances/{instanceId}", "Delete an instance and its files for good.", false, true),
    tool(
        "chat",
        Method::POST,
        "/api/instances/{instanceId}/chat/stream",
        "Send a message to the instance's agent and wait for its answer. With a progress token, the answer's pieces and the agent's tool steps arrive as progress notifications. Answers both persisted messages.",
        false,
        false,
    ),
    tool("chat_history", Method::GET, "/api/instances/{instanceId}/chat/messages", "Messages of a chat session, oldest first.", true, false),
    tool("list_files", Method::GET, "/api/instances/{instanceId}/files", "List a directory inside the instance.", true, false),
    tool("read_file", Method::GET, "/api/instances/{instanceId}/files/read", "Read a UTF-8 text file inside the instance.", true, false),
    tool(
        "write_file",
        Method::POST,
        "/api/instances/{instanceId}/files/write",
        "Write a text file inside the instance (created or replaced).",
        false,
        true,
    ),
    tool(
        "exec",
        Method::POST,
        "/api/instances/{instanceId}/terminal/exec",
        "Run one shell command inside the instance; answers its exit code, stdout and stderr.",
        false,
        true,
    ),
    tool("list_snapshots", Method::GET, "/api/instances/{instanceId}/snapshots", "The instance's snapshots.", true, false),
    tool(
        "create_snapshot",
        Method::POST,
        "/api/instances/{instanceId}/snapshots",
        "Take a snapshot of the instance's workspace and agent state.",
        false,
        false,
    ),
    tool(
        "restore_snapshot",
        Method::POST,
        "/api/instances/{instanceId}/restore",
        "Put a snapshot back into the instance (a safety snapshot is taken first).",
        false,
        true,
    ),
];

/// Where an argument goes in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Path,
    Query,
}

/// A parameter of the operation: its name in the API and as an argument.
#[derive(Debug, Clone)]
pub struct Param {
    pub api_name: String,
    pub arg: String,
    pub place: Place,
    pub required: bool,
}

/// A tool as served: its definition, its MCP description, and how arguments map to the request.
pub struct Entry {
    pub def: &'static ToolDef,
    pub tool: Tool,
    pub params: Vec<Param>,
    pub has_body: bool,
}

/// `instanceId` → `instance_id`.
pub fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Every tool, from the OpenAPI document `spec` (as JSON).
pub fn build(spec: &Value) -> Vec<Entry> {
    TOOLS.iter().map(|def| entry(def, spec)).collect()
}

fn entry(def: &'static ToolDef, spec: &Value) -> Entry {
    let operation = &spec["paths"][def.path][def.method.as_str().to_ascii_lowercase()];
    assert!(operation.is_object(), "MCP tool `{}` names no documented operation", def.name);
    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut params = Vec::new();
    for p in operation["parameters"].as_array().into_iter().flatten() {
        let (Some(api_name), Some(place)) = (p["name"].as_str(), p["in"].as_str()) else { continue };
        let place = match place {
            "path" => Place::Path,
            "query" => Place::Query,
            _ => continue,
        };
        let arg = snake(api_name);
        let mut schema = resolve(&p["schema"], spec, 0);
        if let (Some(description), Some(object)) = (p["description"].as_str(), schema.as_object_mut()) {
            object.entry("description").or_insert_with(|| description.into());
        }
        let is_required = p["required"].as_bool().unwrap_or(false);
        if is_required {
            required.push(Value::from(arg.clone()));
        }
        properties.insert(arg.clone(), schema);
        params.push(Param { api_name: api_name.to_owned(), arg, place, required: is_required });
    }
    let body = &operation["requestBody"]["content"]["application/json"]["schema"];
    let has_body = body.is_object();
    if has_body {
        let body = resolve(body, spec, 0);
        for (name, schema) in body["properties"].as_object().into_iter().flatten() {
            properties.insert(name.clone(), schema.clone());
        }
        required.extend(body["required"].as_array().into_iter().flatten().cloned());
    }
    let mut schema = JsonObject::new();
    schema.insert("type".into(), "object".into());
    schema.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".into(), Value::Array(required));
    }
    let annotations = ToolAnnotations::new().read_only(def.read_only).destructive(def.destructive).open_world(false);
    let mut tool = Tool::new(def.name, def.description, Arc::new(schema));
    tool.annotations = Some(annotations);
    Entry { def, tool, params, has_body }
}

/// `schema` with every `$ref` to the document's components written in place (at most 8 deep:
/// deeper references become `{}`, any value).
fn resolve(schema: &Value, spec: &Value, depth: usize) -> Value {
    if depth > 8 {
        return json!({});
    }
    match schema {
        Value::Object(object) => {
            if let Some(target) = object.get("$ref").and_then(Value::as_str) {
                let name = target.trim_start_matches("#/components/schemas/");
                let mut resolved = resolve(&spec["components"]["schemas"][name], spec, depth + 1);
                if let (Some(into), Some(description)) = (resolved.as_object_mut(), object.get("description")) {
                    into.insert("description".into(), description.clone());
                }
                return resolved;
            }
            Value::Object(object.iter().filter(|(k, _)| k.as_str() != "example").map(|(k, v)| (k.clone(), resolve(v, spec, depth))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(v, spec, depth)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_is_a_documented_operation_with_its_arguments() {
        let spec = serde_json::to_value(crate::router::openapi()).unwrap();
        let entries = build(&spec);
        assert_eq!(entries.len(), TOOLS.len());
        let write = entries.iter().find(|e| e.def.name == "write_file").unwrap();
        let schema = &write.tool.input_schema;
        assert_eq!(schema["required"], json!(["instance_id", "path", "content"]));
        assert_eq!(schema["properties"]["instance_id"]["format"], "uuid");
        let read = entries.iter().find(|e| e.def.name == "read_file").unwrap();
        assert_eq!(read.params.iter().map(|p| (p.arg.as_str(), p.place)).collect::<Vec<_>>(), [("instance_id", Place::Path), ("path", Place::Query)]);
        assert!(!serde_json::to_string(&spec_of(&entries)).unwrap().contains("$ref"), "references are resolved");
    }

    fn spec_of(entries: &[Entry]) -> Vec<Value> {
        entries.iter().map(|e| Value::Object((*e.tool.input_schema).clone())).collect()
    }

    #[test]
    fn api_names_become_snake_case_arguments() {
        assert_eq!(snake("instanceId"), "instance_id");
        assert_eq!(snake("path"), "path");
    }
}
