//! `GET /api`: runtime metadata for clients and agents.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::PublicOrigin;

/// The resource list of the public API reference, exactly.
pub const RESOURCES: [&str; 12] = [
    "/api/instances",
    "/api/instances/{instanceId}",
    "/api/instances/{instanceId}/chat",
    "/api/instances/{instanceId}/chat/stream",
    "/api/instances/{instanceId}/chat/events",
    "/api/instances/{instanceId}/chat/messages",
    "/api/instances/{instanceId}/files",
    "/api/instances/{instanceId}/files/read",
    "/api/instances/{instanceId}/files/write",
    "/api/instances/{instanceId}/terminal/exec",
    "/api/instances/{instanceId}/terminal/ws",
    "/api/instances/{instanceId}/vnc/ws",
];

#[derive(Serialize, ToSchema)]
pub struct AuthInfo {
    /// Always `bearer`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// How to send the key.
    pub header: &'static str,
    /// Where keys are made (absolute URL).
    pub keys_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct Links {
    pub docs: String,
    pub openapi_json: String,
    pub openapi_yaml: String,
    pub llms_txt: String,
    pub account: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "name": "ocaas", "version": "0.1.0",
    "api_root": "https://ocaas.example.com/api",
    "resources": RESOURCES,
    "auth": {"type": "bearer", "header": "Authorization: Bearer YOUR_API_KEY", "keys_url": "https://ocaas.example.com/account"},
    "links": {
        "docs": "https://ocaas.example.com/docs",
        "openapi_json": "https://ocaas.example.com/api/openapi.json",
        "openapi_yaml": "https://ocaas.example.com/api/openapi.yaml",
        "llms_txt": "https://ocaas.example.com/llms.txt",
        "account": "https://ocaas.example.com/account"
    }
}))]
pub struct ApiRoot {
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    /// Absolute URL of the API root.
    pub api_root: String,
    /// The main resources (paths relative to the origin, as in the API reference).
    pub resources: Vec<&'static str>,
    pub auth: AuthInfo,
    pub links: Links,
}

/// API root
///
/// Runtime metadata: name, version, the main resources, how to authenticate and where the
/// docs are. Needs no authentication.
#[utoipa::path(get, path = "/api", tag = "meta", security(()),
    responses((status = 200, description = "Metadata", body = ApiRoot)))]
pub async fn api_root(origin: PublicOrigin) -> Json<ApiRoot> {
    Json(ApiRoot {
        name: env!("CARGO_PKG_NAME"),
        version: env!("CARGO_PKG_VERSION"),
        description: "Self-hosted OpenClaw as a Service: OpenClaw agent sandboxes with a workspace and a desktop, driven over HTTP.",
        api_root: origin.url("/api"),
        resources: RESOURCES.to_vec(),
        auth: AuthInfo { kind: "bearer", header: "Authorization: Bearer YOUR_API_KEY", keys_url: origin.url("/account") },
        links: Links {
            docs: origin.url("/docs"),
            openapi_json: origin.url("/api/openapi.json"),
            openapi_yaml: origin.url("/api/openapi.yaml"),
            llms_txt: origin.url("/llms.txt"),
            account: origin.url("/account"),
        },
    })
}
