//! The one error type of the HTTP API and its JSON shape
//! `{"error":"snake_case_code","message":"human sentence"}`.
//!
//! Client mistakes carry their status and code; internal causes (database, I/O) are
//! logged with the request's span and answered with a generic 500, never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "invalid_request", "message": "Field `email` is missing."}))]
pub struct ErrorBody {
    /// Stable, machine-readable snake_case code.
    pub error: String,
    /// Human-readable sentence explaining what went wrong.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{code}: {message}")]
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
        retry_after_secs: Option<u64>,
    },
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError::Client { status, code, message: message.into(), retry_after_secs: None }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        AppError::Unauthorized(message.into())
    }
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        if let AppError::Client { retry_after_secs, .. } = &mut self {
            *retry_after_secs = Some(secs);
        }
        self
    }

    /// Status and code, as the client will see them.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::Client { status, code, .. } => (*status, code),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Database(_) | AppError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
            }
        }
    }
}

pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody { error: code.to_owned(), message: message.to_owned() };
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match self {
            AppError::Client { message, retry_after_secs, .. } => {
                let mut response = json_error(status, code, &message);
                if let Some(secs) = retry_after_secs {
                    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                response
            }
            AppError::Unauthorized(message) => {
                let mut response = json_error(status, code, &message);
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            AppError::Database(cause) => {
                tracing::error!(error = %cause, "database error");
                json_error(status, code, "The server hit an internal error; it has been logged.")
            }
            AppError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                json_error(status, code, "The server hit an internal error; it has been logged.")
            }
        }
    }
}
