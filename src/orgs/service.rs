//! The rules of organisations: who may rename, delete, invite, change roles and remove; an
//! organisation always keeps an owner; invitations are taken by the account with their email.

use sqlx::PgPool;
use uuid::Uuid;

use super::models::{InvitationView, InviteRequest, OrgRole, OrgView};
use super::repo;
use crate::error::{AppError, AppResult, ErrorCode};

const MAX_NAME_CHARS: usize = 100;
/// Organisations one user may belong to.
pub const MAX_ORGS_PER_USER: usize = 50;

pub fn org_not_found() -> AppError {
    AppError::new(ErrorCode::OrgNotFound, "No organisation with this id has you as a member.")
}

pub fn invitation_not_found() -> AppError {
    AppError::new(ErrorCode::InvitationNotFound, "No open invitation with this id.")
}

fn role_insufficient(role: OrgRole, what: &str) -> AppError {
    AppError::new(ErrorCode::RoleInsufficient, format!("Your role in this organisation ({role}) does not allow {what}."))
}

pub fn need_manager(org: &OrgView) -> AppResult<()> {
    if org.role.manages() { Ok(()) } else { Err(role_insufficient(org.role, "this; it needs an owner or admin")) }
}

pub fn need_owner(org: &OrgView) -> AppResult<()> {
    if org.role == OrgRole::Owner { Ok(()) } else { Err(role_insufficient(org.role, "this; it needs an owner")) }
}

pub fn check_name(raw: &str) -> AppResult<&str> {
    match crate::extract::printable_label(raw, "name", MAX_NAME_CHARS) {
        Ok(Some(name)) => Ok(name),
        _ => Err(AppError::new(ErrorCode::InvalidRequest, format!("`name` must be 1 to {MAX_NAME_CHARS} printable characters."))),
    }
}

pub async fn create(db: &PgPool, owner: Uuid, name: &str) -> AppResult<OrgView> {
    let name = check_name(name)?;
    let id = Uuid::now_v7();
    let mut tx = db.begin().await?;
    // Counted under the user's lock: creates sent at once cannot pass the limit together.
    crate::db::lock_user(&mut tx, owner).await?;
    if repo::list_for_user(&mut *tx, owner).await?.len() >= MAX_ORGS_PER_USER {
        return Err(AppError::new(ErrorCode::InvalidRequest, format!("You belong to {MAX_ORGS_PER_USER} organisations already.")));
    }
    repo::create(&mut tx, id, name, owner).await?;
    tx.commit().await?;
    repo::get_for_member(db, id, owner).await?.ok_or_else(org_not_found)
}

/// Gives `member` the role `to`, or removes them (`None`), as the caller (`org.role`) may.
pub async fn change(db: &PgPool, org: &OrgView, member: Uuid, to: Option<OrgRole>) -> AppResult<()> {
    change_as(db, org, member, to, false).await
}

/// `change`, or a member leaving by themselves (`leaving`: any role may).
pub async fn change_as(db: &PgPool, org: &OrgView, member: Uuid, to: Option<OrgRole>, leaving: bool) -> AppResult<()> {
    let mut tx = db.begin().await?;
    let owners = repo::lock_owners(&mut tx, org.id).await?;
    let current = repo::role(&mut *tx, org.id, member)
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::MemberNotFound, "The organisation has no such member."))?;
    if !leaving {
        need_manager(org)?;
        let touches_owner = current == OrgRole::Owner || to == Some(OrgRole::Owner);
        if touches_owner && org.role != OrgRole::Owner {
            return Err(role_insufficient(org.role, "changing an owner or making one"));
        }
    }
    let loses_owner = current == OrgRole::Owner && to != Some(OrgRole::Owner);
    if loses_owner && owners.len() <= 1 {
        return Err(AppError::new(ErrorCode::LastOwner, "An organisation keeps at least one owner: make another member owner first."));
    }
    match to {
        Some(role) => repo::set_role(&mut *tx, org.id, member, role).await?,
        None => repo::remove(&mut *tx, org.id, member).await?,
    };
    // Invitations outlive no inviter's right to make them.
    if !to.is_some_and(OrgRole::manages) {
        repo::drop_invitations_by(&mut *tx, org.id, member).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn invite(db: &PgPool, org: &OrgView, by: Uuid, request: &InviteRequest) -> AppResult<InvitationView> {
    need_manager(org)?;
    if request.role == OrgRole::Owner {
        return Err(AppError::new(ErrorCode::InvalidRequest, "Invite as `admin`, `member` or `viewer`; owners are made from members."));
    }
    let email = request.email.trim();
    let valid = email.len() <= 254 && email.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.'));
    if !valid || email.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AppError::new(ErrorCode::InvalidRequest, "`email` is not an email address."));
    }
    Ok(repo::invite(db, org.id, &email.to_lowercase(), request.role, by).await?)
}

pub async fn email_of(db: &PgPool, user_id: Uuid) -> AppResult<String> {
    repo::email_of(db, user_id).await?.ok_or_else(|| AppError::unauthorized("The account no longer exists."))
}

/// Joins the organisation of the invitation `id` addressed to the user's email.
pub async fn accept(db: &PgPool, user_id: Uuid, id: Uuid) -> AppResult<OrgView> {
    let email = email_of(db, user_id).await?;
    let mut tx = db.begin().await?;
    let (org_id, role) = repo::take_invitation(&mut tx, id, &email).await?.ok_or_else(invitation_not_found)?;
    repo::join(&mut tx, org_id, user_id, role).await?;
    tx.commit().await?;
    repo::get_for_member(db, org_id, user_id).await?.ok_or_else(org_not_found)
}
