//! The agent-facing texts — `/llms.txt`, `/llms-full.md`, `/agent.md`, the skill bundle and its
//! helper client — kept as templates in `static/agent/` and served with this server's public
//! origin in place of `{{ORIGIN}}` (and `{{WS_ORIGIN}}` for websocket URLs).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::extract::{PublicOrigin, ws_origin};
use crate::state::AppState;

/// (URL path, content type, template).
pub const TEMPLATES: &[(&str, &str, &str)] = &[
    ("/llms.txt", "text/plain; charset=utf-8", include_str!("../../static/agent/llms.txt")),
    ("/llms-full.md", "text/markdown; charset=utf-8", include_str!("../../static/agent/llms-full.md")),
    ("/agent.md", "text/markdown; charset=utf-8", include_str!("../../static/agent/agent.md")),
    (
        "/skills/openclaw-api-control/SKILL.md",
        "text/markdown; charset=utf-8",
        include_str!("../../static/agent/skills/openclaw-api-control/SKILL.md"),
    ),
    (
        "/skills/openclaw-api-control/scripts/openclaw_api_client.mjs",
        "text/javascript; charset=utf-8",
        include_str!("../../static/agent/skills/openclaw-api-control/scripts/openclaw_api_client.mjs"),
    ),
];

pub fn render(template: &str, origin: &str) -> String {
    template.replace("{{WS_ORIGIN}}", &ws_origin(origin)).replace("{{ORIGIN}}", origin)
}

pub fn routes() -> Router<AppState> {
    TEMPLATES.iter().fold(Router::new(), |router, (path, content_type, template)| {
        router.route(
            path,
            get(move |origin: PublicOrigin| async move {
                ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "no-cache")], render(template, &origin.0)).into_response()
            }),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        for (path, _, template) in TEMPLATES {
            let text = render(template, "https://claw.example.test");
            assert!(!text.contains("{{"), "{path} keeps a placeholder");
            assert!(text.contains("https://claw.example.test"), "{path} names the origin");
        }
    }
}
