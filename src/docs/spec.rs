//! The OpenAPI document: metadata, tags and the bearer security scheme. Paths come from the
//! domain routers (`app::api_router`), so the spec cannot drift from the routes.

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
        (name = "chat", description = "Chat with the instance's agent: sessions, turns, history, events"),
        (name = "files", description = "Files inside an instance (as the sandbox user)"),
        (name = "terminal", description = "Commands and terminals inside an instance"),
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

pub fn to_json(spec: &utoipa::openapi::OpenApi) -> String {
    let mut json = spec.to_pretty_json().expect("the OpenAPI document serialises");
    json.push('\n');
    json
}

pub fn to_yaml(spec: &utoipa::openapi::OpenApi) -> String {
    spec.to_yaml().expect("the OpenAPI document serialises")
}
