//! HTTP handlers of `/api/orgs…` and the caller's invitations (`/api/account/invitations…`).
//! `extract::Membership` answers 404 `org_not_found` to anyone who is not a member before any
//! handler code runs; what a role may do here is checked by `service`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use uuid::Uuid;

use super::extract::Membership;
use super::models::{InvitationView, InviteRequest, MemberView, OrgRequest, OrgView, RoleChange};
use super::{repo, service};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiPath, ClientAddr};
use crate::state::AppState;

/// Your organisations
///
/// Every organisation you belong to, with your role and its plan.
#[utoipa::path(operation_id = "list_orgs", get, path = "/api/orgs", tag = "orgs", responses((status = 200, description = "Organisations", body = [OrgView])))]
pub async fn list(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<Vec<OrgView>>> {
    Ok(Json(repo::list_for_user(&state.db, user.user_id).await?))
}

/// Create an organisation
///
/// You become its owner. It has no plan (no instances, no model tokens) until the operator
/// gives it one (`ocaas admin org plan`).
#[utoipa::path(operation_id = "create_org", post, path = "/api/orgs", tag = "orgs", request_body = OrgRequest,
    responses(
        (status = 201, description = "Created", body = OrgView),
        (status = 400, description = "`invalid_request`: a bad name", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientAddr,
    ApiJson(body): ApiJson<OrgRequest>,
) -> AppResult<(StatusCode, Json<OrgView>)> {
    let org = service::create(&state.db, user.user_id, &body.name).await?;
    crate::audit::record_action(&state.db, AuditAction::OrgCreated, &user, client.as_deref(), Some(org.id.to_string())).await?;
    Ok((StatusCode::CREATED, Json(org)))
}

/// An organisation
///
/// Its name, plan, instance count and your role.
#[utoipa::path(operation_id = "get_org", get, path = "/api/orgs/{orgId}", tag = "orgs", params(("orgId" = Uuid, Path, description = "Organisation id")),
    responses((status = 200, description = "The organisation", body = OrgView), (status = 404, description = "`org_not_found`", body = ErrorBody)))]
pub async fn get(Membership { org, .. }: Membership) -> Json<OrgView> {
    Json(org)
}

/// Rename an organisation
///
/// Owners and admins.
#[utoipa::path(operation_id = "rename_org", patch, path = "/api/orgs/{orgId}", tag = "orgs", params(("orgId" = Uuid, Path, description = "Organisation id")),
    request_body = OrgRequest,
    responses(
        (status = 200, description = "The organisation now", body = OrgView),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 403, description = "`role_insufficient`", body = ErrorBody),
        (status = 404, description = "`org_not_found`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn rename(
    State(state): State<AppState>,
    Membership { user, org }: Membership,
    ApiJson(body): ApiJson<OrgRequest>,
) -> AppResult<Json<OrgView>> {
    service::need_manager(&org)?;
    repo::rename(&state.db, org.id, service::check_name(&body.name)?).await?;
    Ok(Json(repo::get_for_member(&state.db, org.id, user.user_id).await?.ok_or_else(service::org_not_found)?))
}

/// Delete an organisation
///
/// Owners only, and only without instances (409 `org_not_empty`).
#[utoipa::path(operation_id = "delete_org", delete, path = "/api/orgs/{orgId}", tag = "orgs", params(("orgId" = Uuid, Path, description = "Organisation id")),
    responses(
        (status = 204, description = "Deleted, with its memberships and invitations"),
        (status = 403, description = "`role_insufficient`", body = ErrorBody),
        (status = 404, description = "`org_not_found`", body = ErrorBody),
        (status = 409, description = "`org_not_empty`", body = ErrorBody),
    ))]
pub async fn delete(State(state): State<AppState>, client: ClientAddr, Membership { user, org }: Membership) -> AppResult<StatusCode> {
    service::need_owner(&org)?;
    if !repo::delete_if_empty(&state.db, org.id).await? {
        return Err(AppError::new(ErrorCode::OrgNotEmpty, "The organisation has instances; delete them first."));
    }
    crate::audit::record_action(&state.db, AuditAction::OrgDeleted, &user, client.as_deref(), Some(org.id.to_string())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Members
///
/// Everyone in the organisation with their role; every member may see it.
#[utoipa::path(operation_id = "list_org_members", get, path = "/api/orgs/{orgId}/members", tag = "orgs", params(("orgId" = Uuid, Path, description = "Organisation id")),
    responses((status = 200, description = "Members", body = [MemberView]), (status = 404, description = "`org_not_found`", body = ErrorBody)))]
pub async fn members(State(state): State<AppState>, Membership { org, .. }: Membership) -> AppResult<Json<Vec<MemberView>>> {
    Ok(Json(repo::members(&state.db, org.id).await?))
}

/// Change a member's role
///
/// Owners change anyone's; admins change admins', members' and viewers' (not to or from
/// owner). The last owner stays an owner (409 `last_owner`).
#[utoipa::path(operation_id = "change_org_member_role", patch, path = "/api/orgs/{orgId}/members/{userId}", tag = "orgs",
    params(("orgId" = Uuid, Path, description = "Organisation id"), ("userId" = Uuid, Path, description = "The member's user id")),
    request_body = RoleChange,
    responses(
        (status = 200, description = "The members now", body = [MemberView]),
        (status = 400, description = "`invalid_request`", body = ErrorBody),
        (status = 403, description = "`role_insufficient`", body = ErrorBody),
        (status = 404, description = "`org_not_found` or `member_not_found`", body = ErrorBody),
        (status = 409, description = "`last_owner`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn change_role(
    State(state): State<AppState>,
    client: ClientAddr,
    Membership { user, org }: Membership,
    ApiPath(ids): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<RoleChange>,
) -> AppResult<Json<Vec<MemberView>>> {
    let member = ids.1;
    service::change(&state.db, &org, member, Some(body.role)).await?;
    crate::audit::record_action(&state.db, AuditAction::OrgMemberChanged, &user, client.as_deref(), Some(member.to_string())).await?;
    Ok(Json(repo::members(&state.db, org.id).await?))
}

/// Remove a member
///
/// Owners and admins remove others (admins: not owners); anyone may leave. The last owner
/// stays (409 `last_owner`).
#[utoipa::path(operation_id = "remove_org_member", delete, path = "/api/orgs/{orgId}/members/{userId}", tag = "orgs",
    params(("orgId" = Uuid, Path, description = "Organisation id"), ("userId" = Uuid, Path, description = "The member's user id")),
    responses(
        (status = 400, description = "`invalid_request`: an id is not a UUID", body = ErrorBody),
        (status = 204, description = "Removed"),
        (status = 403, description = "`role_insufficient`", body = ErrorBody),
        (status = 404, description = "`org_not_found` or `member_not_found`", body = ErrorBody),
        (status = 409, description = "`last_owner`", body = ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    client: ClientAddr,
    Membership { user, org }: Membership,
    ApiPath(ids): ApiPath<(Uuid, Uuid)>,
) -> AppResult<StatusCode> {
    let member = ids.1;
    let leaving = member == user.user_id;
    if leaving {
        service::change_as(&state.db, &org, member, None, true).await?;
    } else {
        service::change(&state.db, &org, member, None).await?;
    }
    crate::audit::record_action(&state.db, AuditAction::OrgMemberRemoved, &user, client.as_deref(), Some(member.to_string())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Open invitations of an organisation
///
/// Owners and admins.
#[utoipa::path(operation_id = "list_org_invitations", get, path = "/api/orgs/{orgId}/invitations", tag = "orgs", params(("orgId" = Uuid, Path, description = "Organisation id")),
    responses(
        (status = 200, description = "Invitations not yet accepted or expired", body = [InvitationView]),
        (status = 403, description = "`role_insufficient`", body = ErrorBody),
        (status = 404, description = "`org_not_found`", body = ErrorBody),
    ))]
pub async fn invitations(State(state): State<AppState>, Membership { org, .. }: Membership) -> AppResult<Json<Vec<InvitationView>>> {
    service::need_manager(&org)?;
    Ok(Json(repo::invitations_of_org(&state.db, org.id).await?))
}

/// Invite someone by email
///
/// Owners and admins. The account registered with that email (now or later) sees the
/// invitation at `GET /api/account/invitations` and on its dashboard for 7 days; no email is
/// sent by the server.
#[utoipa::path(operation_id = "invite_to_org", post, path = "/api/orgs/{orgId}/invitations", tag = "orgs", params(("orgId" = Uuid, Path, description = "Organisation id")),
    request_body = InviteRequest,
    responses(
        (status = 201, description = "Invited", body = InvitationView),
        (status = 400, description = "`invalid_request`: a bad email, or the role `owner`", body = ErrorBody),
        (status = 403, description = "`role_insufficient`", body = ErrorBody),
        (status = 404, description = "`org_not_found`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn invite(
    State(state): State<AppState>,
    client: ClientAddr,
    Membership { user, org }: Membership,
    ApiJson(body): ApiJson<InviteRequest>,
) -> AppResult<(StatusCode, Json<InvitationView>)> {
    let invitation = service::invite(&state.db, &org, user.user_id, &body).await?;
    crate::audit::record_action(&state.db, AuditAction::OrgMemberInvited, &user, client.as_deref(), Some(invitation.id.to_string())).await?;
    Ok((StatusCode::CREATED, Json(invitation)))
}

/// Withdraw an invitation
///
/// Owners and admins; the invitation can no longer be accepted.
#[utoipa::path(operation_id = "withdraw_org_invitation", delete, path = "/api/orgs/{orgId}/invitations/{invitationId}", tag = "orgs",
    params(("orgId" = Uuid, Path, description = "Organisation id"), ("invitationId" = Uuid, Path, description = "Invitation id")),
    responses(
        (status = 400, description = "`invalid_request`: an id is not a UUID", body = ErrorBody),
        (status = 204, description = "Withdrawn"),
        (status = 403, description = "`role_insufficient`", body = ErrorBody),
        (status = 404, description = "`org_not_found` or `invitation_not_found`", body = ErrorBody),
    ))]
pub async fn withdraw(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    ApiPath(ids): ApiPath<(Uuid, Uuid)>,
) -> AppResult<StatusCode> {
    service::need_manager(&org)?;
    if !repo::cancel_invitation(&state.db, org.id, ids.1).await? {
        return Err(service::invitation_not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Your invitations
///
/// Open invitations to organisations, addressed to your account's email.
#[utoipa::path(operation_id = "list_my_invitations", get, path = "/api/account/invitations", tag = "orgs", responses((status = 200, description = "Invitations", body = [InvitationView])))]
pub async fn mine(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<Vec<InvitationView>>> {
    let email = service::email_of(&state.db, user.user_id).await?;
    Ok(Json(repo::invitations_for(&state.db, &email).await?))
}

/// Accept an invitation
///
/// You join the organisation with the invitation's role (a member already keeps theirs).
#[utoipa::path(operation_id = "accept_invitation", post, path = "/api/account/invitations/{invitationId}/accept", tag = "orgs",
    params(("invitationId" = Uuid, Path, description = "Invitation id")),
    responses(
        (status = 400, description = "`invalid_request`: an id is not a UUID", body = ErrorBody),
        (status = 200, description = "The organisation you joined", body = OrgView),
        (status = 404, description = "`invitation_not_found`", body = ErrorBody),
    ))]
pub async fn accept(State(state): State<AppState>, client: ClientAddr, user: AuthUser, ApiPath(id): ApiPath<Uuid>) -> AppResult<Json<OrgView>> {
    let org = service::accept(&state.db, user.user_id, id).await?;
    crate::audit::record_action(&state.db, AuditAction::OrgMemberJoined, &user, client.as_deref(), Some(org.id.to_string())).await?;
    Ok(Json(org))
}

/// Decline an invitation
///
/// The invitation is gone; the organisation may invite you again.
#[utoipa::path(operation_id = "decline_invitation", delete, path = "/api/account/invitations/{invitationId}", tag = "orgs",
    params(("invitationId" = Uuid, Path, description = "Invitation id")),
    responses(
        (status = 400, description = "`invalid_request`: an id is not a UUID", body = ErrorBody), (status = 204, description = "Declined"), (status = 404, description = "`invitation_not_found`", body = ErrorBody)))]
pub async fn decline(State(state): State<AppState>, user: AuthUser, ApiPath(id): ApiPath<Uuid>) -> AppResult<StatusCode> {
    let email = service::email_of(&state.db, user.user_id).await?;
    let mut tx = state.db.begin().await?;
    repo::take_invitation(&mut tx, id, &email).await?.ok_or_else(service::invitation_not_found)?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
