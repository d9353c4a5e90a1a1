//! What a scoped key may do. Every operation needs one scope, decided here from its route
//! template and method (the one table of it); a key with scopes reaches only the operations of
//! those scopes, and a key bound to an instance only that instance's operations. Browser
//! sessions and keys without scopes reach everything their user can. An operation missing from
//! the table needs a key without scopes (fail closed).

use axum::http::Method;
use uuid::Uuid;

crate::text_enum! {
    /// A permission a key can carry (`POST /api/account/keys` `scopes`).
    pub enum Scope {
        /// List and read instances, their status, logs, usage, model and limits.
        InstancesRead => "instances:read",
        /// Create, change, delete instances and drive their lifecycle.
        InstancesWrite => "instances:write",
        /// Chat with the agent: sessions, turns, history, events.
        Chat => "chat",
        /// List, read and download files.
        FilesRead => "files:read",
        /// Write, upload, rename, delete files and make directories.
        FilesWrite => "files:write",
        /// Run commands, the terminal and the desktop.
        Exec => "exec",
        /// Snapshots: take, download, restore, delete.
        Snapshots => "snapshots",
        /// The always-on agent: configuration, channels, schedules, approvals.
        Agent => "agent",
        /// The account: keys, usage, audit, webhooks, organisations and invitations.
        Account => "account",
    }
}

/// What an API key is granted: all of its user's rights, or scopes, on any or one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// `None`: every scope.
    pub scopes: Option<Vec<Scope>>,
    pub instance_id: Option<Uuid>,
}

impl Grant {
    /// The grant of a key as stored (words the list does not know grant nothing).
    pub fn stored(scopes: Option<Vec<String>>, instance_id: Option<Uuid>) -> Self {
        Grant { scopes: scopes.map(|words| words.iter().filter_map(|w| Scope::parse(w)).collect()), instance_id }
    }

    /// Everything its user can do.
    pub fn is_full(&self) -> bool {
        self.scopes.is_none() && self.instance_id.is_none()
    }

    /// Whether `other` asks for no more than this grant has.
    pub fn covers(&self, other: &Grant) -> bool {
        let scopes = match (&self.scopes, &other.scopes) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs.iter().all(|s| mine.contains(s)),
        };
        let instance = self.instance_id.is_none() || self.instance_id == other.instance_id;
        scopes && instance
    }
}

/// The scope `method` on the route `template` needs; `None` when the table has no row for it.
pub fn required(method: &Method, template: &str) -> Option<Scope> {
    use Scope::*;
    let read = matches!(*method, Method::GET | Method::HEAD);
    let rest = template.strip_prefix("/api/instances/{instanceId}");
    let scope = match (template, rest) {
        (t, None) if t.starts_with("/api/account") || t.starts_with("/api/orgs") => Account,
        ("/api/instances", None) => {
            if read {
                InstancesRead
            } else {
                InstancesWrite
            }
        }
        (_, Some("")) => {
            if read {
                InstancesRead
            } else {
                InstancesWrite
            }
        }
        (_, Some(r)) => match r.trim_start_matches('/').split('/').next().unwrap_or("") {
            "status" | "logs" | "usage" => InstancesRead,
            "model" | "limits" if read => InstancesRead,
            "model" | "limits" | "pause" | "resume" | "reboot" | "shutdown" | "start" | "upgrade" => InstancesWrite,
            "snapshots" | "restore" => Snapshots,
            "chat" => Chat,
            "files" if read => FilesRead,
            "files" => FilesWrite,
            "terminal" | "vnc-url" | "vnc" => Exec,
            "agent" | "config" | "gateway" | "doctor" | "channels" | "pairings" | "schedules" | "approvals" | "tool-policy" => Agent,
            _ => return None,
        },
        _ => return None,
    };
    Some(scope)
}

/// The instance a request names: the segment of `path` where `template` has `{instanceId}`.
pub fn instance_in(template: &str, path: &str) -> Option<Uuid> {
    let at = template.split('/').position(|s| s == "{instanceId}")?;
    path.split('/').nth(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_route_has_its_scope() {
        let g = Method::GET;
        let p = Method::POST;
        assert_eq!(required(&g, "/api/instances"), Some(Scope::InstancesRead));
        assert_eq!(required(&p, "/api/instances"), Some(Scope::InstancesWrite));
        assert_eq!(required(&Method::DELETE, "/api/instances/{instanceId}"), Some(Scope::InstancesWrite));
        assert_eq!(required(&g, "/api/instances/{instanceId}/files/read"), Some(Scope::FilesRead));
        assert_eq!(required(&p, "/api/instances/{instanceId}/files/write"), Some(Scope::FilesWrite));
        assert_eq!(required(&p, "/api/instances/{instanceId}/terminal/exec"), Some(Scope::Exec));
        assert_eq!(required(&g, "/api/instances/{instanceId}/snapshots/{snapshotId}/download"), Some(Scope::Snapshots));
        assert_eq!(required(&Method::PATCH, "/api/instances/{instanceId}/config"), Some(Scope::Agent));
        assert_eq!(required(&g, "/api/account/keys"), Some(Scope::Account));
        assert_eq!(required(&g, "/api/instances/{instanceId}/mystery"), None, "unknown routes need a full key");
        let id = Uuid::nil();
        assert_eq!(instance_in("/api/instances/{instanceId}/files", &format!("/api/instances/{id}/files")), Some(id));
    }

    #[test]
    fn a_grant_covers_only_what_it_has() {
        let chat = Grant { scopes: Some(vec![Scope::Chat]), instance_id: None };
        let full = Grant::default();
        assert!(full.covers(&chat) && !chat.covers(&full));
        let bound = Grant { scopes: Some(vec![Scope::Chat]), instance_id: Some(Uuid::nil()) };
        assert!(chat.covers(&bound) && !bound.covers(&chat));
    }
}
