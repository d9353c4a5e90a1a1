//! What each role may do with an organisation's instances: decided from the operation's route
//! and method through the scope table (`auth::scopes::required`), so a new route falls into its
//! scope's rule without a second table. Owners and admins do everything; members use the
//! instances (chat, files, commands, terminal, desktop, snapshots, start/stop) but neither
//! create, delete, upgrade, re-plan them nor change their agent's settings; viewers read, and
//! open no terminal or desktop.

use axum::http::Method;
use sqlx::PgPool;
use uuid::Uuid;

use super::models::OrgRole;
use crate::auth::scopes::{Scope, required};
use crate::error::{AppError, AppResult, ErrorCode};

/// Whether `role` may run `method` on the route `template` of one of the organisation's instances.
pub fn allows(role: OrgRole, method: &Method, template: &str) -> bool {
    // Reading a channel's login (a WhatsApp QR code) links the agent to whoever scans it.
    if template.ends_with("/channels/{kind}/login") {
        return role.manages();
    }
    let read = matches!(*method, Method::GET | Method::HEAD);
    let Some(scope) = required(method, template) else { return role.manages() };
    let action = template.rsplit('/').next().unwrap_or("");
    match role {
        OrgRole::Owner | OrgRole::Admin => true,
        OrgRole::Member => match scope {
            Scope::InstancesWrite => matches!(action, "start" | "shutdown" | "reboot" | "pause" | "resume"),
            Scope::Agent => read,
            _ => true,
        },
        OrgRole::Viewer => read && scope != Scope::Exec,
    }
}

/// 404 for someone who is not a member (the instance's existence is not revealed), 403
/// `role_insufficient` naming the role when the role does not allow the operation.
pub async fn check(db: &PgPool, org_id: Uuid, user_id: Uuid, method: &Method, template: &str) -> AppResult<()> {
    let Some(role) = super::repo::role(db, org_id, user_id).await? else {
        return Err(crate::extract::instance_not_found());
    };
    if allows(role, method, template) {
        return Ok(());
    }
    Err(AppError::new(ErrorCode::RoleInsufficient, format!("Your role in this instance's organisation ({role}) does not allow this.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_reaches_what_its_row_says() {
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        let instance = "/api/instances/{instanceId}";
        let exec = "/api/instances/{instanceId}/terminal/exec";
        let chat = "/api/instances/{instanceId}/chat";
        let config = "/api/instances/{instanceId}/config";
        assert!(allows(OrgRole::Admin, &delete, instance) && allows(OrgRole::Owner, &Method::PATCH, config));
        assert!(allows(OrgRole::Member, &post, exec) && allows(OrgRole::Member, &post, chat));
        assert!(allows(OrgRole::Member, &post, "/api/instances/{instanceId}/shutdown"));
        assert!(!allows(OrgRole::Member, &delete, instance) && !allows(OrgRole::Member, &post, "/api/instances/{instanceId}/upgrade"));
        assert!(!allows(OrgRole::Member, &Method::PATCH, config) && allows(OrgRole::Member, &get, config));
        assert!(allows(OrgRole::Viewer, &get, "/api/instances/{instanceId}/files/read"));
        assert!(!allows(OrgRole::Viewer, &post, chat) && !allows(OrgRole::Viewer, &post, exec));
        assert!(!allows(OrgRole::Viewer, &get, "/api/instances/{instanceId}/terminal/ws"), "a terminal is not reading");
        assert!(!allows(OrgRole::Viewer, &get, "/api/instances/{instanceId}/channels/{kind}/login"), "a QR code links the agent");
        assert!(
            !allows(OrgRole::Member, &get, "/api/instances/{instanceId}/mystery")
                && allows(OrgRole::Admin, &get, "/api/instances/{instanceId}/mystery")
        );
    }
}
