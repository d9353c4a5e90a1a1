//! The one error type of the HTTP API, its JSON shape
//! `{"error":"snake_case_code","message":"human sentence"}`, the table of every error code
//! (one code per condition, each with its status), and the conversions from lower layers'
//! errors — the only place where a database or engine failure becomes an HTTP answer.
//!
//! Client mistakes carry their code; internal causes are logged with the request's span and
//! answered with a generic 500, never shown. A dependency that is down (database, engine) is
//! a 503 with `Retry-After`, not a 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::runtime::RuntimeError;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "invalid_request", "message": "Field `email` is missing."}))]
pub struct ErrorBody {
    /// Stable, machine-readable snake_case code.
    pub error: String,
    /// Human-readable sentence explaining what went wrong.
    pub message: String,
}

macro_rules! error_codes {
    ($($variant:ident = ($status:ident, $code:literal, $meaning:literal),)*) => {
        /// Every error code the API answers with. Adding a condition means adding a row here
        /// (and to the table in docs/api.md, which a test compares with this one).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }

            /// When the code is answered, for the docs.
            pub fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)* }
            }
        }
    };
}

error_codes! {
    InvalidRequest = (BAD_REQUEST, "invalid_request", "The body, query or a path parameter does not fit the operation."),
    InvalidPath = (BAD_REQUEST, "invalid_path", "A sandbox path is not absolute, has `..` or a NUL byte."),
    InvalidCwd = (BAD_REQUEST, "invalid_cwd", "`terminal/exec`'s `cwd` is not a directory the sandbox user can enter."),
    InvalidEmail = (BAD_REQUEST, "invalid_email", "The email address is not one."),
    WeakPassword = (BAD_REQUEST, "weak_password", "The password is too short or too long."),
    IsADirectory = (BAD_REQUEST, "is_a_directory", "A file operation named a directory."),
    NotADirectory = (BAD_REQUEST, "not_a_directory", "A directory operation named something else."),
    NotARegularFile = (BAD_REQUEST, "not_a_regular_file", "A read or download named a device, socket or the like."),
    OperationFailed = (BAD_REQUEST, "operation_failed", "A file operation failed inside the sandbox for another reason (the message says)."),
    Unauthorized = (UNAUTHORIZED, "unauthorized", "No, an unknown, revoked or expired key, session or ticket."),
    InsufficientScope = (FORBIDDEN, "insufficient_scope", "The API key lacks the scope the operation needs, or is bound to another instance (the message names which)."),
    CsrfFailed = (FORBIDDEN, "csrf_failed", "A cookie-authenticated change without the session's `X-CSRF-Token`."),
    OriginMismatch = (FORBIDDEN, "origin_mismatch", "A cookie-authenticated websocket from a page of another origin."),
    RegistrationClosed = (FORBIDDEN, "registration_closed", "The server takes no registrations (`OCAAS_REGISTRATION=closed`)."),
    InviteRequired = (FORBIDDEN, "invite_required", "Registering needs an invite code on this server."),
    InvalidInviteCode = (FORBIDDEN, "invalid_invite_code", "The invite code is unknown, used up or expired."),
    SubscriptionRequired = (FORBIDDEN, "subscription_required", "Creating an instance needs an active subscription or an invite code."),
    InstanceLimitReached = (FORBIDDEN, "instance_limit_reached", "The plan's `max_instances` is reached."),
    SnapshotQuotaExceeded = (FORBIDDEN, "snapshot_quota_exceeded", "The user's snapshots fill the plan's snapshot storage."),
    KeepAwakeLimit = (FORBIDDEN, "keep_awake_limit", "The plan allows no more instances pinned awake."),
    PermissionDenied = (FORBIDDEN, "permission_denied", "The sandbox user may not do that at that path."),
    NotFound = (NOT_FOUND, "not_found", "No such route, or nothing exists at that sandbox path."),
    InstanceNotFound = (NOT_FOUND, "instance_not_found", "No instance with that id on the caller's account (other users' instances included)."),
    SessionNotFound = (NOT_FOUND, "session_not_found", "The instance has no chat session with that id."),
    SnapshotNotFound = (NOT_FOUND, "snapshot_not_found", "The instance has no snapshot with that id."),
    KeyNotFound = (NOT_FOUND, "key_not_found", "The caller has no API key with that id."),
    UserNotFound = (NOT_FOUND, "user_not_found", "No user has that email (admin commands)."),
    MethodNotAllowed = (METHOD_NOT_ALLOWED, "method_not_allowed", "The route exists, the method does not."),
    InstanceNotRunning = (CONFLICT, "instance_not_running", "The operation needs the instance `ready` (chat, files, commands, terminal, desktop)."),
    InstanceStopped = (CONFLICT, "instance_stopped", "A file or command call on a stopped instance (chat and the websockets start it by themselves)."),
    InvalidState = (CONFLICT, "invalid_state", "A lifecycle action that the instance's current status does not allow."),
    SessionBusy = (CONFLICT, "session_busy", "A chat turn is already running in that session."),
    NoActiveTurn = (CONFLICT, "no_active_turn", "A chat abort for a session with no turn running."),
    AlreadyExists = (CONFLICT, "already_exists", "Something is in the way at the target path."),
    DirectoryNotEmpty = (CONFLICT, "directory_not_empty", "Deleting a non-empty directory without `recursive`."),
    EmailTaken = (CONFLICT, "email_taken", "An account with that email exists."),
    PayloadTooLarge = (PAYLOAD_TOO_LARGE, "payload_too_large", "The request body is larger than the route accepts."),
    FileTooLarge = (PAYLOAD_TOO_LARGE, "file_too_large", "A file over `OCAAS_MAX_READ_BYTES` (read) or `OCAAS_MAX_UPLOAD_BYTES` (write, upload), or one the instance's storage has no room for (`OCAAS_INSTANCE_DISK`)."),
    NotText = (UNSUPPORTED_MEDIA_TYPE, "not_text", "`files/read` of a file that is not UTF-8 (use `files/download`)."),
    UnsupportedMediaType = (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "A body that is not JSON (or multipart where allowed)."),
    TooManyConcurrent = (TOO_MANY_REQUESTS, "too_many_concurrent", "The user already has the most commands, terminals, desktop sockets or event streams allowed at once."),
    RateLimited = (TOO_MANY_REQUESTS, "rate_limited", "Too many sign-in or registration attempts from one address or on one account; `Retry-After` says when."),
    WebsocketRequired = (UPGRADE_REQUIRED, "websocket_required", "A plain request to a websocket endpoint."),
    InternalError = (INTERNAL_SERVER_ERROR, "internal_error", "A bug or an unexpected failure; logged with the request id."),
    DesktopUnavailable = (BAD_GATEWAY, "desktop_unavailable", "The sandbox's VNC server does not answer."),
    CapacityExhausted = (SERVICE_UNAVAILABLE, "capacity_exhausted", "The server runs `OCAAS_MAX_INSTANCES` instances; `Retry-After` says when to retry."),
    NotReady = (SERVICE_UNAVAILABLE, "not_ready", "`/readyz`: the database or the engine is unreachable."),
    SessionLimitReached = (CONFLICT, "session_limit_reached", "The instance has the most chat sessions allowed (1,000)."),
    TooManyInFlight = (TOO_MANY_REQUESTS, "too_many_in_flight", "The user (`OCAAS_USER_MAX_INFLIGHT`) or, without credentials, the client address (`OCAAS_ADDR_MAX_INFLIGHT`) already has that many requests being handled."),
    BodyTooSlow = (REQUEST_TIMEOUT, "body_too_slow", "The request body did not arrive within `OCAAS_BODY_TIMEOUT_SECS` at 4 KiB/s or more."),
    ServerBusy = (SERVICE_UNAVAILABLE, "server_busy", "`OCAAS_MAX_INFLIGHT` requests are being handled; retry after `Retry-After`."),
    DatabaseUnavailable = (SERVICE_UNAVAILABLE, "database_unavailable", "PostgreSQL cannot be reached right now; retry after `Retry-After`."),
    EngineUnavailable = (SERVICE_UNAVAILABLE, "engine_unavailable", "The container engine cannot be reached right now; retry after `Retry-After`."),
    GatewayUnavailable = (SERVICE_UNAVAILABLE, "gateway_unavailable", "The instance's gateway does not answer over its own protocol right now (starting, restarting, or a gateway without it); `Retry-After` says when."),
    GatewayRejected = (UNPROCESSABLE_ENTITY, "gateway_rejected", "The instance's gateway refused the request; the message is the gateway's."),
    InvalidConfig = (UNPROCESSABLE_ENTITY, "invalid_config", "A configuration patch that the gateway's schema rejects, or that touches a key ocaas manages."),
    ConfigOnProbation = (CONFLICT, "config_on_probation", "A configuration change while the last one is on probation (the gateway is not confirmed back yet)."),
    ConfigChanged = (PRECONDITION_FAILED, "config_changed", "`If-Match` names another version of the configuration than the current one."),
    ScheduleNotFound = (NOT_FOUND, "schedule_not_found", "The instance's agent has no schedule with that id."),
    ApprovalNotFound = (NOT_FOUND, "approval_not_found", "The instance's agent has no approval request with that id."),
    ApprovalClosed = (CONFLICT, "approval_closed", "The approval request was answered already or has expired."),
    OrgNotFound = (NOT_FOUND, "org_not_found", "No organisation with that id has the caller as a member."),
    MemberNotFound = (NOT_FOUND, "member_not_found", "The organisation has no member with that user id."),
    InvitationNotFound = (NOT_FOUND, "invitation_not_found", "No open invitation with that id (for the caller's email, or of that organisation)."),
    RoleInsufficient = (FORBIDDEN, "role_insufficient", "The caller's role in the organisation does not allow the operation (the message names the role)."),
    LastOwner = (CONFLICT, "last_owner", "The change would leave the organisation without an owner."),
    OrgNotEmpty = (CONFLICT, "org_not_empty", "An organisation with instances cannot be deleted; delete them first."),
    WebhookNotFound = (NOT_FOUND, "webhook_not_found", "The account has no webhook endpoint with that id."),
    WebhookBacklog = (TOO_MANY_REQUESTS, "webhook_backlog", "A test send to an endpoint with 100 deliveries pending."),
    JoinTokenInvalid = (UNAUTHORIZED, "join_token_invalid", "`ocaas node` joined with a token that is unknown, used or expired (`ocaas admin nodes join-token` makes one)."),
    NodeExists = (CONFLICT, "node_exists", "A node of that name has joined already (`ocaas admin nodes remove` it first)."),
    WebhookLimitReached = (FORBIDDEN, "webhook_limit_reached", "The account has the most webhook endpoints allowed (20)."),
    PairingNotFound = (NOT_FOUND, "pairing_not_found", "No pending DM pairing request with that id."),
    TerminalViewerMissing = (SERVICE_UNAVAILABLE, "terminal_viewer_missing", "xterm.js (Debian's `node-xterm`) is not installed for the dashboard's terminal."),
}

/// Seconds a client is told to wait when a dependency is down.
const DEPENDENCY_RETRY_AFTER_SECS: u64 = 5;
const INTERNAL_MESSAGE: &str = "The server hit an internal error; it has been logged.";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{}: {message}", code.as_str())]
    Client { code: ErrorCode, message: String, retry_after_secs: Option<u64> },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError::Client { code, message: message.into(), retry_after_secs: None }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        if let AppError::Client { retry_after_secs, .. } = &mut self {
            *retry_after_secs = Some(secs);
        }
        self
    }

    /// The client error's code, if it is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            AppError::Client { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The message a client would be told (for errors reported inside an event stream).
    pub fn into_message(self) -> String {
        self.resolve().1
    }

    /// What the client is told: the lower layers' errors resolved to a code and a message.
    fn resolve(self) -> (ErrorCode, String, Option<u64>) {
        match self {
            AppError::Client { code, message, retry_after_secs } => (code, message, retry_after_secs),
            AppError::Database(cause) if is_connection_failure(&cause) => {
                tracing::warn!(error = %cause, "database unreachable");
                let message = "The database cannot be reached right now; try again shortly.";
                (ErrorCode::DatabaseUnavailable, message.into(), Some(DEPENDENCY_RETRY_AFTER_SECS))
            }
            AppError::Database(cause) => {
                tracing::error!(error = %cause, "database error");
                (ErrorCode::InternalError, INTERNAL_MESSAGE.into(), None)
            }
            AppError::Runtime(RuntimeError::NotFound(_) | RuntimeError::Conflict(_)) => {
                (ErrorCode::InstanceNotRunning, "The instance's sandbox is not running.".into(), None)
            }
            AppError::Runtime(RuntimeError::Unavailable(cause)) => {
                tracing::warn!(error = %cause, "container engine unreachable");
                let message = "The container engine cannot be reached right now; try again shortly.";
                (ErrorCode::EngineUnavailable, message.into(), Some(DEPENDENCY_RETRY_AFTER_SECS))
            }
            AppError::Runtime(RuntimeError::Other(cause)) => {
                tracing::error!(error = %cause, "container engine error");
                (ErrorCode::InternalError, INTERNAL_MESSAGE.into(), None)
            }
            AppError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                (ErrorCode::InternalError, INTERNAL_MESSAGE.into(), None)
            }
        }
    }
}

impl From<std::io::Error> for AppError {
    fn from(error: std::io::Error) -> Self {
        AppError::Internal(error.into())
    }
}

/// Errors that mean PostgreSQL is out of reach (or the pool cannot get a connection to it),
/// as opposed to a query that failed.
fn is_connection_failure(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_))
        || matches!(error, sqlx::Error::Database(e) if e.code().is_some_and(|c| c.starts_with("08") || c == "57P01" || c == "57P03"))
}

/// An error response outside the `AppError` flow (fallbacks, middleware).
pub fn json_error(code: ErrorCode, message: &str) -> Response {
    let body = ErrorBody { error: code.as_str().to_owned(), message: message.to_owned() };
    (code.status(), axum::Json(body)).into_response()
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (code, message, retry_after) = self.resolve();
        let mut response = json_error(code, &message);
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if code == ErrorCode::Unauthorized {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_listed_in_the_api_notes() {
        let notes = include_str!("../docs/api.md");
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} is listed twice");
            assert!(text.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{text} is not snake_case");
            let row = format!("| `{text}` | {} |", code.status().as_u16());
            assert!(notes.contains(&row), "the error table of docs/api.md lacks the row starting `{row}`");
        }
    }

    #[test]
    fn engine_and_database_outages_are_503_with_retry_after() {
        for error in [AppError::from(RuntimeError::Unavailable("down".into())), AppError::from(sqlx::Error::PoolTimedOut)] {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(response.headers().contains_key(header::RETRY_AFTER));
        }
        let gone = AppError::from(RuntimeError::NotFound("sandy-x".into())).into_response();
        assert_eq!(gone.status(), StatusCode::CONFLICT);
    }
}
