//! SQL of organisations: the organisation with the caller's role, members, invitations.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::models::{InvitationView, MemberView, OrgRole, OrgView};

/// How long an invitation may be accepted.
pub const INVITATION_DAYS: i32 = 7;

/// The organisations `user_id` belongs to (only `id`, when given), as they see them.
async fn of_member(db: impl PgExecutor<'_>, user_id: Uuid, id: Option<Uuid>) -> sqlx::Result<Vec<OrgView>> {
    sqlx::query_as!(
        OrgView,
        r#"SELECT o.id, o.name, m.role AS "role: OrgRole", o.max_instances, o.monthly_tokens, o.created_at,
                  (SELECT count(*) FROM instances i WHERE i.org_id = o.id) AS "instances!"
             FROM orgs o JOIN org_members m ON m.org_id = o.id AND m.user_id = $1
            WHERE $2::uuid IS NULL OR o.id = $2
            ORDER BY o.created_at, o.id"#,
        user_id,
        id
    )
    .fetch_all(db)
    .await
}

pub async fn list_for_user(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Vec<OrgView>> {
    of_member(db, user_id, None).await
}

/// The organisation as `user_id` sees it; `None` when they are not a member.
pub async fn get_for_member(db: impl PgExecutor<'_>, id: Uuid, user_id: Uuid) -> sqlx::Result<Option<OrgView>> {
    Ok(of_member(db, user_id, Some(id)).await?.pop())
}

pub async fn role(db: impl PgExecutor<'_>, org_id: Uuid, user_id: Uuid) -> sqlx::Result<Option<OrgRole>> {
    sqlx::query_scalar!(r#"SELECT role AS "role: OrgRole" FROM org_members WHERE org_id = $1 AND user_id = $2"#, org_id, user_id)
        .fetch_optional(db)
        .await
}

/// A new organisation with `owner` as its first owner.
pub async fn create(tx: &mut PgConnection, id: Uuid, name: &str, owner: Uuid) -> sqlx::Result<()> {
    sqlx::query!("INSERT INTO orgs (id, name) VALUES ($1, $2)", id, name).execute(&mut *tx).await?;
    sqlx::query!("INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, 'owner')", id, owner).execute(&mut *tx).await?;
    Ok(())
}

pub async fn rename(db: impl PgExecutor<'_>, id: Uuid, name: &str) -> sqlx::Result<()> {
    sqlx::query!("UPDATE orgs SET name = $2 WHERE id = $1", id, name).execute(db).await?;
    Ok(())
}

/// Deletes the organisation if it has no instances; `false` when it has some. Its row is
/// locked first (as a create for it does), so the check that follows sees every instance made.
pub async fn delete_if_empty(db: &sqlx::PgPool, id: Uuid) -> sqlx::Result<bool> {
    let mut tx = db.begin().await?;
    sqlx::query_scalar!("SELECT id FROM orgs WHERE id = $1 FOR UPDATE", id).fetch_optional(&mut *tx).await?;
    let done =
        sqlx::query!("DELETE FROM orgs WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM instances WHERE org_id = $1)", id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// The operator's plan for the organisation.
pub async fn set_plan(db: impl PgExecutor<'_>, id: Uuid, max_instances: i32, monthly_tokens: Option<i64>) -> sqlx::Result<bool> {
    let done =
        sqlx::query!("UPDATE orgs SET max_instances = $2, monthly_tokens = $3 WHERE id = $1", id, max_instances, monthly_tokens).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// The organisation's `max_instances`, its row locked for the caller's transaction.
pub async fn lock_plan(tx: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<i32>> {
    sqlx::query_scalar!("SELECT max_instances FROM orgs WHERE id = $1 FOR UPDATE", id).fetch_optional(tx).await
}

pub async fn members(db: impl PgExecutor<'_>, org_id: Uuid) -> sqlx::Result<Vec<MemberView>> {
    sqlx::query_as!(
        MemberView,
        r#"SELECT m.user_id, u.email, m.role AS "role: OrgRole", m.created_at AS joined_at
             FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.created_at, u.email"#,
        org_id
    )
    .fetch_all(db)
    .await
}

/// The owners, locked (the last one is never removed or demoted).
pub async fn lock_owners(tx: &mut PgConnection, org_id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!("SELECT user_id FROM org_members WHERE org_id = $1 AND role = 'owner' FOR UPDATE", org_id).fetch_all(tx).await
}

pub async fn set_role(db: impl PgExecutor<'_>, org_id: Uuid, user_id: Uuid, role: OrgRole) -> sqlx::Result<bool> {
    let done =
        sqlx::query!("UPDATE org_members SET role = $3 WHERE org_id = $1 AND user_id = $2", org_id, user_id, role as OrgRole).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

pub async fn remove(db: impl PgExecutor<'_>, org_id: Uuid, user_id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2", org_id, user_id).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// An invitation (a second one to the same address replaces the first).
pub async fn invite(db: impl PgExecutor<'_>, org_id: Uuid, email: &str, role: OrgRole, by: Uuid) -> sqlx::Result<InvitationView> {
    sqlx::query_as!(
        InvitationView,
        r#"WITH made AS (
               INSERT INTO org_invitations (id, org_id, email, role, invited_by, expires_at)
               VALUES ($1, $2, $3, $4, $5, now() + make_interval(days => $6))
               ON CONFLICT (org_id, email) DO UPDATE SET role = EXCLUDED.role, invited_by = EXCLUDED.invited_by,
                      created_at = now(), expires_at = EXCLUDED.expires_at
               RETURNING id, org_id, email, role, created_at, expires_at)
           SELECT made.id, made.org_id, o.name AS org_name, made.email, made.role AS "role: OrgRole", made.created_at, made.expires_at
             FROM made JOIN orgs o ON o.id = made.org_id"#,
        Uuid::now_v7(),
        org_id,
        email,
        role as OrgRole,
        by,
        INVITATION_DAYS,
    )
    .fetch_one(db)
    .await
}

/// Withdraws the open invitations `user_id` made in the organisation.
pub async fn drop_invitations_by(db: impl PgExecutor<'_>, org_id: Uuid, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM org_invitations WHERE org_id = $1 AND invited_by = $2", org_id, user_id).execute(db).await?;
    Ok(())
}

/// Open invitations, newest first: of the organisation `org_id`, or to the address `email`.
async fn open_invitations(db: impl PgExecutor<'_>, org_id: Option<Uuid>, email: Option<&str>) -> sqlx::Result<Vec<InvitationView>> {
    sqlx::query_as!(
        InvitationView,
        r#"SELECT v.id, v.org_id, o.name AS org_name, v.email, v.role AS "role: OrgRole", v.created_at, v.expires_at
             FROM org_invitations v JOIN orgs o ON o.id = v.org_id
            WHERE v.expires_at > now() AND ($1::uuid IS NULL OR v.org_id = $1) AND ($2::text IS NULL OR lower(v.email) = lower($2))
            ORDER BY v.created_at DESC"#,
        org_id,
        email
    )
    .fetch_all(db)
    .await
}

pub async fn invitations_of_org(db: impl PgExecutor<'_>, org_id: Uuid) -> sqlx::Result<Vec<InvitationView>> {
    open_invitations(db, Some(org_id), None).await
}

/// Open invitations to the account with `email`.
pub async fn invitations_for(db: impl PgExecutor<'_>, email: &str) -> sqlx::Result<Vec<InvitationView>> {
    open_invitations(db, None, Some(email)).await
}

pub async fn cancel_invitation(db: impl PgExecutor<'_>, org_id: Uuid, id: Uuid) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM org_invitations WHERE id = $1 AND org_id = $2", id, org_id).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// Takes the open invitation `id` addressed to `email`: (organisation, role), and it is gone.
pub async fn take_invitation(tx: &mut PgConnection, id: Uuid, email: &str) -> sqlx::Result<Option<(Uuid, OrgRole)>> {
    let taken = sqlx::query!(
        r#"DELETE FROM org_invitations WHERE id = $1 AND lower(email) = lower($2) AND expires_at > now()
           RETURNING org_id, role AS "role: OrgRole""#,
        id,
        email
    )
    .fetch_optional(tx)
    .await?;
    Ok(taken.map(|t| (t.org_id, t.role)))
}

/// Makes `user_id` a member with `role`; one who is a member already keeps their role.
pub async fn join(tx: &mut PgConnection, org_id: Uuid, user_id: Uuid, role: OrgRole) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT (org_id, user_id) DO NOTHING",
        org_id,
        user_id,
        role as OrgRole
    )
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn email_of(db: impl PgExecutor<'_>, user_id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!("SELECT email FROM users WHERE id = $1", user_id).fetch_optional(db).await
}

/// An organisation as the operator lists it.
pub struct OrgSummary {
    pub id: Uuid,
    pub name: String,
    pub max_instances: i32,
    pub monthly_tokens: Option<i64>,
    pub members: i64,
    pub instances: i64,
}

pub async fn all(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<OrgSummary>> {
    sqlx::query_as!(
        OrgSummary,
        r#"SELECT o.id, o.name, o.max_instances, o.monthly_tokens,
                  (SELECT count(*) FROM org_members m WHERE m.org_id = o.id) AS "members!",
                  (SELECT count(*) FROM instances i WHERE i.org_id = o.id) AS "instances!"
             FROM orgs o ORDER BY o.created_at, o.id"#
    )
    .fetch_all(db)
    .await
}
