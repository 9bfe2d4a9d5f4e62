//! Sentry's `Project.save` / `Project.delete`, plus the organization and team saves that
//! share the snowflake path.

use std::time::Duration;

use crate::db::Db;
use crate::domain::slug::{self, PROJECT_SLUG_MAX_LENGTH, RESERVED_PROJECT_SLUGS};
use crate::domain::snowflake::{SaveError, Snowflake, save_with_snowflake_id};
use crate::kv::{Kv, KvError};
use crate::now_ms;
use crate::store::organizations::{self, Organization};
use crate::store::projects::{self, Project};
use crate::store::teams::{self, Team};
use crate::store::{StoreError, found};

/// Sentry: `locks.get("slug:project:{org}", duration=5)` under `TimedRetryPolicy(10)`.
const SLUG_LOCK_TTL: Duration = Duration::from_secs(5);
const SLUG_LOCK_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{0}")]
    Invalid(String),
    /// A team named in the request does not exist, or is another organization's.
    #[error("team {team} is not in organization {organization}")]
    UnknownTeam { team: i64, organization: i64 },
    #[error("the slug {0:?} is already taken in this organization")]
    SlugTaken(String),
    #[error("could not take the project slug lock within 10 s")]
    LockTimeout,
    #[error(transparent)]
    Save(#[from] SaveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kv(#[from] KvError),
}

pub struct Ctx<'a> {
    pub db: &'a Db,
    pub kv: &'a Kv,
    pub snowflake: &'a Snowflake,
}

/// Creates an organization with a snowflake id; the slug defaults to the slugified name.
pub async fn create_organization(
    ctx: &Ctx<'_>,
    name: &str,
    slug: Option<&str>,
) -> Result<Organization, ProjectError> {
    let slug = match slug {
        Some(s) if slug::is_valid_slug(s) => s.to_string(),
        Some(s) => return Err(ProjectError::Invalid(format!("invalid slug {s:?}"))),
        None => slug::base_slug(name, &[], PROJECT_SLUG_MAX_LENGTH),
    };
    let mut tx = ctx.db.begin().await.map_err(StoreError::from)?;
    let taken = organizations::organization_slug_taken(&mut tx, &slug).await?;
    tx.rollback().await.map_err(StoreError::from)?;
    if taken {
        return Err(ProjectError::SlugTaken(slug));
    }
    Ok(save_with_snowflake_id(ctx.snowflake, |id| {
        let slug = slug.clone();
        async move {
            let mut tx = ctx.db.begin().await?;
            let org =
                organizations::insert_organization(&mut tx, id, &slug, name, now_ms()).await?;
            tx.commit().await?;
            Ok(org)
        }
    })
    .await?)
}

/// Creates a team in an organization with a snowflake id.
pub async fn create_team(
    ctx: &Ctx<'_>,
    organization_id: i64,
    name: &str,
    slug: Option<&str>,
) -> Result<Team, ProjectError> {
    let slug = match slug {
        Some(s) if slug::is_valid_slug(s) => s.to_string(),
        Some(s) => return Err(ProjectError::Invalid(format!("invalid slug {s:?}"))),
        None => slug::base_slug(name, &[], PROJECT_SLUG_MAX_LENGTH),
    };
    let mut tx = ctx.db.begin().await.map_err(StoreError::from)?;
    found(
        organizations::find_organization(&mut tx, organization_id).await?,
        "organization",
    )?;
    let taken = teams::list_teams(&mut tx, organization_id)
        .await?
        .iter()
        .any(|t| t.slug.eq_ignore_ascii_case(&slug));
    tx.rollback().await.map_err(StoreError::from)?;
    if taken {
        return Err(ProjectError::SlugTaken(slug));
    }
    Ok(save_with_snowflake_id(ctx.snowflake, |id| {
        let slug = slug.clone();
        async move {
            let mut tx = ctx.db.begin().await?;
            let team =
                teams::insert_team(&mut tx, id, organization_id, &slug, name, now_ms()).await?;
            tx.commit().await?;
            Ok(team)
        }
    })
    .await?)
}

/// `Project.save` for a new project: explicit slug validated, or one generated under the
/// per-organization slug lock; then saved with a snowflake id together with its team links.
pub async fn create_project(
    ctx: &Ctx<'_>,
    organization_id: i64,
    name: &str,
    slug: Option<&str>,
    team_ids: &[i64],
) -> Result<Project, ProjectError> {
    if name.trim().is_empty() {
        return Err(ProjectError::Invalid("name must not be empty".into()));
    }
    {
        let mut tx = ctx.db.begin().await.map_err(StoreError::from)?;
        found(
            organizations::find_organization(&mut tx, organization_id).await?,
            "organization",
        )?;
        for team_id in team_ids {
            let team = teams::find_team(&mut tx, *team_id).await?;
            if team.is_none_or(|t| t.organization_id != organization_id) {
                return Err(ProjectError::UnknownTeam {
                    team: *team_id,
                    organization: organization_id,
                });
            }
        }
        tx.rollback().await.map_err(StoreError::from)?;
    }
    match slug {
        Some(s) => {
            if !slug::is_valid_slug(s) {
                return Err(ProjectError::Invalid(format!(
                    "invalid slug {s:?}: use lower-case letters, digits, '-' or '_', not only digits, at most {PROJECT_SLUG_MAX_LENGTH} characters"
                )));
            }
            save_project(ctx, organization_id, name, s, team_ids).await
        }
        None => {
            let key = format!("slug:project:{organization_id}");
            let guard = ctx
                .kv
                .lock(&key, SLUG_LOCK_TTL, SLUG_LOCK_WAIT)
                .await?
                .ok_or(ProjectError::LockTimeout)?;
            let result = async {
                let slug = pick_free_slug(ctx.db, organization_id, name).await?;
                save_project(ctx, organization_id, name, &slug, team_ids).await
            }
            .await;
            ctx.kv.release(guard).await?;
            result
        }
    }
}

/// `slugify_instance`: the base slug, or the first free suffixed one. When all 28 are taken
/// we return the last and let the unique index refuse it, as Sentry does.
async fn pick_free_slug(db: &Db, organization_id: i64, name: &str) -> Result<String, ProjectError> {
    let base = slug::base_slug(name, RESERVED_PROJECT_SLUGS, PROJECT_SLUG_MAX_LENGTH);
    let candidates = slug::candidates(&base, PROJECT_SLUG_MAX_LENGTH);
    let mut tx = db.begin().await.map_err(StoreError::from)?;
    let mut last = base.clone();
    for c in candidates {
        if !projects::project_slug_taken(&mut tx, organization_id, &c).await? {
            tx.rollback().await.map_err(StoreError::from)?;
            return Ok(c);
        }
        last = c;
    }
    tx.rollback().await.map_err(StoreError::from)?;
    Ok(last)
}

async fn save_project(
    ctx: &Ctx<'_>,
    organization_id: i64,
    name: &str,
    slug: &str,
    team_ids: &[i64],
) -> Result<Project, ProjectError> {
    {
        let mut tx = ctx.db.begin().await.map_err(StoreError::from)?;
        let taken = projects::project_slug_taken(&mut tx, organization_id, slug).await?;
        tx.rollback().await.map_err(StoreError::from)?;
        if taken {
            return Err(ProjectError::SlugTaken(slug.to_string()));
        }
    }
    Ok(save_with_snowflake_id(ctx.snowflake, |id| async move {
        let mut tx = ctx.db.begin().await?;
        let project =
            projects::insert_project(&mut tx, id, organization_id, slug, name, now_ms()).await?;
        for team_id in team_ids {
            projects::add_project_team(&mut tx, project.id, *team_id).await?;
        }
        tx.commit().await?;
        Ok(project)
    })
    .await?)
}

/// `Project.delete`: the manual cascade in one transaction.
pub async fn delete_project(db: &Db, project_id: i64) -> Result<(), ProjectError> {
    use issuesync_jobs::invalidate_project_caches::CacheKind;
    let mut tx = db.begin_write().await.map_err(StoreError::from)?;
    if projects::find_project(&mut tx, project_id).await?.is_some() {
        // The invalidations run after the commit, when the groups are gone: keep their ids.
        let now = crate::now_ms();
        crate::store::groups::backlog_recent_groups(
            &mut tx,
            project_id,
            now - crate::domain::caches::RECENT_WINDOW_MS,
            now,
        )
        .await?;
        crate::domain::caches::enqueue_invalidation(&mut tx, project_id, CacheKind::AssigneeExists)
            .await?;
        crate::domain::caches::enqueue_invalidation(&mut tx, project_id, CacheKind::OwnerDebounce)
            .await?;
    }
    if !projects::delete_project_cascade(&mut tx, project_id).await? {
        return Err(StoreError::NotFound("project".into()).into());
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}
