//! The OpenAPI document: metadata, tags and the bearer security scheme. Paths come from the
//! domain routers (`router::api_router`), so the spec cannot drift from the routes.

use utoipa::openapi::Ref;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ocaas",
        description = "Self-hosted OpenClaw as a Service: per-user OpenClaw agent sandboxes \
                       (Docker containers with a /workspace and a virtual desktop) behind one HTTP API.\n\n\
                       Authenticate with `Authorization: Bearer <API key>`; create keys at `/account` \
                       or with `POST /api/account/keys`. Errors are always \
                       `{\"error\":\"snake_case_code\",\"message\":\"human sentence\"}`.\n\n\
                       Browser sessions (the `ocaas_session` cookie) must send the session's CSRF token \
                       in `X-CSRF-Token` on every POST/PUT/PATCH/DELETE.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "meta", description = "Discovery and health"),
        (name = "account", description = "Accounts, sessions and API keys"),
        (name = "instances", description = "Instances: Docker sandboxes running the OpenClaw gateway"),
        (name = "snapshots", description = "Snapshots of an instance's workspace and agent state: take, download, restore, clone"),
        (name = "chat", description = "Chat with the instance's agent: sessions, turns, history, events"),
        (name = "agent", description = "The always-on agent: configuration, channels, DM pairings, schedules, approval requests, tool policy, its feed"),
        (name = "files", description = "Files inside an instance (as the sandbox user)"),
        (name = "terminal", description = "Commands and terminals inside an instance"),
        (name = "orgs", description = "Organisations: members and roles, invitations by email, shared instances"),
        (name = "webhooks", description = "Outbound webhooks (Standard Webhooks): endpoints, signed deliveries, their log"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ocaas_ API key")
                    .description(Some("An API key from /account or `POST /api/account/keys`."))
                    .build(),
            ),
        );
    }
}

/// What can only be added once the domain routers' paths are in: the 401 answers, and the
/// answers of the layer in front of every route (`inflight`).
pub fn complete(spec: &mut utoipa::openapi::OpenApi) {
    Unauthenticated.modify(spec);
    InFlight.modify(spec);
    super::sse::add_events(spec);
}

fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build()
        .into()
}

/// Every operation but the probes can be refused for load (429 `too_many_in_flight`, 503
/// `server_busy`), and one with a body can refuse it (408 `body_too_slow`, 413, 415);
/// operations that document one of these codes keep their own description.
struct InFlight;

impl Modify for InFlight {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if matches!(path.as_str(), "/healthz" | "/readyz") {
                continue;
            }
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses
                    .entry("429".to_owned())
                    .or_insert_with(|| error_response("`too_many_in_flight`: this user or address has its requests in flight"));
                responses
                    .entry("503".to_owned())
                    .or_insert_with(|| error_response("`server_busy`: the server is at `OCAAS_MAX_INFLIGHT`; see `Retry-After`"));
                // A body is read by the same bounded extractors everywhere: too slow, too large,
                // or not the declared media type.
                if operation.request_body.is_some() {
                    responses.entry("408".to_owned()).or_insert_with(|| error_response("`body_too_slow`: the body arrived too slowly"));
                    responses
                        .entry("413".to_owned())
                        .or_insert_with(|| error_response("`payload_too_large`: the body is larger than this endpoint accepts"));
                    responses
                        .entry("415".to_owned())
                        .or_insert_with(|| error_response("`unsupported_media_type`: the body is not of the declared type"));
                }
            }
        }
    }
}

/// Every operation that needs credentials (it does not opt out with `security(())`) can answer
/// 401, and 403 `insufficient_scope` to a scoped key; operations that document their own 401
/// or 403 keep theirs (and say which codes).
struct Unauthenticated;

impl Modify for Unauthenticated {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let response = ResponseBuilder::new()
            .description("Not authenticated")
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let public =
                    operation.security.as_ref().is_some_and(|s| s.iter().any(|r| serde_json::to_value(r).is_ok_and(|v| v == serde_json::json!({}))));
                if !public {
                    operation.responses.responses.entry("401".to_owned()).or_insert_with(|| response.clone().into());
                    operation.responses.responses.entry("403".to_owned()).or_insert_with(|| {
                        error_response("`insufficient_scope`: the API key lacks this operation's scope or is bound to another instance")
                    });
                }
            }
        }
    }
}

pub fn to_json(spec: &utoipa::openapi::OpenApi) -> String {
    let mut json = spec.to_pretty_json().expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

pub fn to_yaml(spec: &utoipa::openapi::OpenApi) -> String {
    spec.to_yaml().expect("the OpenAPI document serialises")
}
