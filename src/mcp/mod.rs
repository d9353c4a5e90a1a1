//! The MCP endpoint, `/mcp`: the Streamable HTTP transport of the Model Context Protocol
//! (through the official Rust SDK, `rmcp`), stateless — each POST carries its own bearer key,
//! any replica answers. Its tools are API operations (`catalog`), run through the API's own
//! routes (`call`). The key is checked at the door (401 like the API); what it may do is
//! decided per tool by the route it runs (403 `insufficient_scope` as an MCP error).

pub mod call;
pub mod catalog;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::ErrorData;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::state::AppState;

/// The route.
pub const PATH: &str = "/mcp";

const INSTRUCTIONS: &str = "ocaas runs OpenClaw agents in sandboxes (instances). Create or pick an instance \
(list_instances, create_instance; wait until get_instance says `ready`), then chat with its agent (chat, chat_history), \
work with its files (list_files, read_file, write_file), run commands (exec) and keep snapshots. Errors carry the \
API's code in `data.error` (e.g. `insufficient_scope`, `instance_not_found`).";

/// The tools and the router they run through, shared by every request.
#[derive(Clone)]
struct Handler {
    tools: Arc<Vec<catalog::Entry>>,
    router: Router,
}

impl ServerHandler for Handler {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("ocaas", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(&self, _request: Option<PaginatedRequestParams>, _context: RequestContext<RoleServer>) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.iter().map(|e| e.tool.clone()).collect()))
    }

    async fn call_tool(&self, request: CallToolRequestParams, context: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        let Some(entry) = self.tools.iter().find(|e| e.tool.name == request.name) else {
            return Err(ErrorData::invalid_params(format!("There is no tool `{}`.", request.name), None));
        };
        let parts = context.extensions.get::<axum::http::request::Parts>();
        let authorization = parts
            .and_then(|p| p.headers.get(header::AUTHORIZATION).cloned())
            .ok_or_else(|| ErrorData::invalid_request("The request carries no credentials.", None))?;
        let caller = call::Caller {
            router: self.router.clone(),
            authorization,
            connect_info: parts.and_then(|p| p.extensions.get().cloned()),
            progress: context.meta.get_progress_token().map(|token| (context.peer.clone(), token)),
        };
        call::run(entry, request.arguments, caller).await.map(Into::into)
    }
}

/// `/mcp`, serving tools that run through `api` (the application's routes, with state).
pub fn router(api: Router, state: &AppState) -> Router {
    let spec = serde_json::to_value(crate::router::openapi()).unwrap_or_default();
    let handler = Handler { tools: Arc::new(catalog::build(&spec)), router: api };
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        // Every request carries a bearer key, which a page of another site cannot send: the
        // Host check against DNS rebinding that a local server needs does not apply.
        .disable_allowed_hosts()
        .with_max_request_body_bytes(state.settings.max_body_bytes)
        .with_cancellation_token(state.shutdown.child_token());
    let service = StreamableHttpService::new(move || Ok(handler.clone()), Arc::new(NeverSessionManager::default()), config);
    Router::new().route_service(PATH, service).layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
}

/// The door: a valid API key (browser sessions are not taken here: no CSRF token in MCP).
async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return challenge(crate::error::AppError::unauthorized(
            "MCP needs an API key: send `Authorization: Bearer <API key>` (create keys at /account).",
        ));
    };
    let key = value.to_str().ok().and_then(crate::auth::extractor::bearer_token).map(str::to_owned);
    let Some(key) = key else {
        return challenge(crate::error::AppError::unauthorized("The Authorization header must be `Bearer <API key>`."));
    };
    let user = match crate::auth::extractor::authenticate_key(&state, &key).await {
        Ok(user) => user,
        Err(error) => return challenge(error),
    };
    // Counted against the user like any API request while the tool runs (`inflight`): the
    // API requests a tool makes inside carry no slot of their own.
    if let Some(held) = request.extensions().get::<crate::inflight::HeldSlot>()
        && let Err(error) = held.hold_with(|| state.user_slots.acquire(user.user_id, crate::state::SlotKind::Request))
    {
        return error.into_response();
    }
    next.run(request).await
}

fn challenge(error: crate::error::AppError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
