//! Which model an instance's agent uses: the operator's (default) or the user's own provider
//! ("bring your own key"), `GET/PUT /api/instances/{instanceId}/model`. The key is write-only:
//! sealed with the server's secret key, never returned or logged (`api_key_set` says whether
//! there is one). The broker picks the upstream per call, so a change applies to the agent's
//! next model call without restarting anything. A custom endpoint must resolve to public
//! addresses unless the operator allows private ones (`OCAAS_MODEL_ALLOW_PRIVATE`): the broker
//! runs on the host and must not be aimed at its internal services.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::repo::{self, CustomModel};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::ApiJson;
use crate::instances::extract::OwnedInstance;
use crate::state::AppState;

const MAX_URL: usize = 2048;
const MAX_MODEL: usize = 200;
const MAX_KEY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// The server operator's provider and model.
    Operator,
    /// The user's own OpenAI-compatible provider, model and key.
    Custom,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"provider": "custom", "base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini", "api_key_set": true}))]
pub struct ModelView {
    pub provider: Provider,
    /// The custom provider's base URL (`null` for the operator's).
    pub base_url: Option<String>,
    pub model: String,
    /// Whether a key is stored (the key itself is never returned).
    pub api_key_set: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"provider": "custom", "base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini", "api_key": "sk-…"}))]
pub struct ModelUpdate {
    pub provider: Provider,
    /// Custom: an `http(s)` OpenAI-compatible base URL (the broker calls `{base_url}/chat/completions`).
    pub base_url: Option<String>,
    /// Custom: the model name the provider expects.
    pub model: Option<String>,
    /// Custom: the provider key; may be left out to keep the stored one. Write-only.
    pub api_key: Option<String>,
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::new(ErrorCode::InvalidRequest, message)
}

/// Checks the URL's form and that its host resolves to addresses the broker may call.
pub(super) async fn check_base_url(raw: &str, allow_private: bool) -> AppResult<String> {
    let url = crate::runtime::outbound::check_url(raw, MAX_URL, allow_private)
        .await
        .map_err(|why| invalid(format!("`base_url`: {why}; this server only calls providers on the public internet.")))?;
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn view(state: &AppState, custom: Option<CustomModel>) -> ModelView {
    match custom {
        Some(custom) => ModelView { provider: Provider::Custom, base_url: Some(custom.base_url), model: custom.model, api_key_set: true },
        None => ModelView { provider: Provider::Operator, base_url: None, model: state.settings.instances.llm.model.clone(), api_key_set: false },
    }
}

/// Instance model
///
/// The model the instance's agent uses through the server's broker: the operator's, or the
/// user's own provider. The key is never returned (`api_key_set`).
#[utoipa::path(get, path = "/api/instances/{instanceId}/model", tag = "instances",
    params(OwnedInstance),
    responses(
        (status = 200, description = "The instance's model", body = ModelView),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn get_model(State(state): State<AppState>, OwnedInstance { instance, .. }: OwnedInstance) -> AppResult<Json<ModelView>> {
    let custom = repo::custom_model(&state.db, instance.id).await?;
    Ok(Json(view(&state, custom)))
}

/// Set the instance model
///
/// `{"provider":"operator"}` goes back to the operator's model (the stored key is deleted);
/// `{"provider":"custom","base_url","model","api_key"}` uses the user's own OpenAI-compatible
/// provider (`api_key` may be left out to keep the stored one). Applies to the agent's next model
/// call; nothing restarts. Usage is metered either way.
#[utoipa::path(put, path = "/api/instances/{instanceId}/model", tag = "instances",
    params(OwnedInstance),
    request_body = ModelUpdate,
    responses(
        (status = 200, description = "The instance's model now", body = ModelView),
        (status = 400, description = "`invalid_request`: a missing or bad field, or an endpoint that is not public", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn put_model(
    State(state): State<AppState>,
    OwnedInstance { instance, .. }: OwnedInstance,
    ApiJson(update): ApiJson<ModelUpdate>,
) -> AppResult<Json<ModelView>> {
    if update.provider == Provider::Operator {
        repo::clear_custom_model(&state.db, instance.id).await?;
        return Ok(Json(view(&state, None)));
    }
    let base_url = check_base_url(
        update.base_url.as_deref().ok_or_else(|| invalid("`base_url` is required for a custom provider."))?,
        state.settings.instances.model_allow_private,
    )
    .await?;
    let model = update.model.as_deref().map(str::trim).filter(|m| !m.is_empty() && m.len() <= MAX_MODEL);
    let model = model.ok_or_else(|| invalid(format!("`model` is required: 1 to {MAX_MODEL} characters.")))?.to_owned();
    let api_key_sealed = match update.api_key.as_deref().map(str::trim) {
        Some(key) if !key.is_empty() && key.len() <= MAX_KEY => state.settings.secret_key.seal(key.as_bytes()),
        Some(_) => return Err(invalid(format!("`api_key` must be 1 to {MAX_KEY} characters."))),
        None => match repo::custom_model(&state.db, instance.id).await? {
            Some(stored) => stored.api_key_sealed,
            None => return Err(invalid("`api_key` is required the first time a custom provider is set.")),
        },
    };
    let custom = CustomModel { base_url, model, api_key_sealed };
    repo::set_custom_model(&state.db, instance.id, &custom).await?;
    Ok(Json(view(&state, Some(custom))))
}
