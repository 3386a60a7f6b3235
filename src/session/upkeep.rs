//! The upkeep of OpenID Connect sessions: their credentials age in view, and in one place.
//!
//! - **Refresh.** When the token answer carried a refresh token (LinkedIn gives them to
//!   partner apps: learn.microsoft.com, "Programmatic Refresh Tokens"), the session keeps it,
//!   sealed like the rest, with its fixed end. The access token is refreshed once it is in its
//!   last quarter of life, at most its last day ([`refresh_window`]: for LinkedIn's 60-day
//!   tokens, the last day): at the next request that reads the member ([`Upkeep::nudge`],
//!   from the sign-in routes' extractors and `/auth/check`, in the background so that no
//!   request waits), or by the pass below when no request comes. Across a fleet, one instance
//!   refreshes a session: it holds the session's lease in the store ([`lease`](super::lease))
//!   for the refresh, reads the session again under it, and finds it refreshed already when
//!   another instance was first. The new access token and its `expires_at` are written to
//!   the session; the refresh token's end never moves. A request that read the session before
//!   the refresh and saves it after keeps the stored credentials ([`keep_refreshed`]). A
//!   refresh the provider refuses drops the refresh token; one that fails otherwise is tried
//!   again after the lease ends; either way the session ends at the access token's expiry, as
//!   without a refresh token.
//! - **Introspection.** With an interval ([`SignInBuilder::introspect_every`](crate::SignInBuilder::introspect_every)),
//!   each live OpenID Connect session's access token is introspected once per interval
//!   (learn.microsoft.com, "Token Introspection"), at most [`INTROSPECTIONS_PER_SECOND`], by
//!   the one instance holding the pass's lease. `revoked` ends every session holding the token
//!   ([`Upkeep::end_withdrawn`], as a 401 from LinkedIn does); `expired`, or
//!   `active: false`, ends that session. `lte_introspections_total{outcome}` counts each
//!   answer; a failed call ends nothing.
//! - **The pass.** Each instance tries to take the pass's lease every tenth of the period
//!   (within 200 ms and a minute). The lease lasts one period and is not given back, so
//!   passes start once per period across the fleet, by whichever instance is first. The
//!   period is the introspection interval, or [`REFRESH_PASS`] without introspection (the
//!   pass then only refreshes the sessions no request touched, loading at most
//!   [`LOADS_PER_SECOND`]). A session whose token expired unrefreshed is deleted by the pass
//!   (a refreshable session's record outlives its access token, up to its idle end).
//!
//! Without OpenID Connect there is no upkeep; without a refresh token nothing is refreshed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distr::Alphanumeric;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::backend::SessionBackend;
use super::member::{Credentials, Ended, Member, member_in, put_member};
use crate::linkedin::oidc::{DEFAULT_TOKEN_LIFETIME, OidcClient, TokenStatus};
use crate::linkedin::transport::UpstreamError;
use crate::telemetry::Telemetry;

/// The most introspection calls a second, across the fleet (one instance makes them). A pass
/// over `n` sessions takes `n / 10` seconds: 216,000 sessions fit in an interval of 6 hours.
pub(crate) const INTROSPECTIONS_PER_SECOND: u32 = 10;
/// The most sessions a pass without introspection reads a second.
pub(crate) const LOADS_PER_SECOND: u32 = 200;
/// The period of the pass without introspection: it refreshes the sessions due before the
/// next one.
pub(crate) const REFRESH_PASS: Duration = Duration::from_secs(6 * 3_600);
/// The longest refresh window: the last day of an access token's life.
const MAX_WINDOW: i64 = 86_400;
/// The shortest life of a session's refresh lease (longer with a longer upstream timeout).
const REFRESH_LEASE: Duration = Duration::from_secs(60);
/// The name of the pass's lease, for a period: a lease taken for another period (before a
/// change of `LINKEDIN_INTROSPECT_EVERY`) does not hold this one's passes back.
fn pass_lease(period: Duration) -> String {
    format!("upkeep-pass:{}", period.as_secs())
}

/// How long before its expiry an access token that lived `lifetime` seconds is refreshed:
/// the last quarter of its life, at most its last day.
pub(crate) fn refresh_window(lifetime: i64) -> i64 {
    (lifetime.max(0) / 4).min(MAX_WINDOW)
}

/// When `member`'s access token is due for a refresh (Unix seconds), or `None` when it
/// cannot be refreshed: not OpenID Connect, no refresh token, or a refresh token that ends
/// (`refresh_expires_at`) no later than the access token does, so that no refresh can
/// lengthen the session.
pub(crate) fn refresh_due_at(member: &Member) -> Option<i64> {
    let Credentials::Oidc {
        refresh_token: Some(_),
        refresh_expires_at,
        issued_at,
        ..
    } = &member.credentials
    else {
        return None;
    };
    if refresh_expires_at.is_some_and(|end| end <= member.expires_at) {
        return None;
    }
    let lifetime = issued_at.map_or(
        i64::try_from(DEFAULT_TOKEN_LIFETIME).unwrap_or(i64::MAX),
        |issued| member.expires_at.saturating_sub(issued),
    );
    Some(member.expires_at.saturating_sub(refresh_window(lifetime)))
}

/// How long `member`'s credentials can keep a session (Unix seconds): the access token's
/// expiry, or, when it can be refreshed, the refresh token's fixed end (none known: no end).
/// The session's record and cookie last until this (or their idle end), so that a token
/// refreshed in the background finds the browser still holding the session; the member
/// still reads as signed out once the access token itself has expired.
pub(crate) fn credentials_end(member: &Member) -> i64 {
    match (&member.credentials, refresh_due_at(member)) {
        (
            Credentials::Oidc {
                refresh_expires_at, ..
            },
            Some(_),
        ) => refresh_expires_at.unwrap_or(i64::MAX),
        _ => member.expires_at,
    }
}

/// `member` with the refreshed access token: issued `now`, expiring `expires_in` seconds
/// later; the refresh token the answer named (else the one it had); the refresh token's end
/// as it was, or sooner when the answer says so, and never later.
pub(crate) fn refreshed(
    member: &Member,
    now: i64,
    access_token: crate::secret::Secret,
    expires_in: u64,
    refresh_token: Option<crate::secret::Secret>,
    refresh_expires_in: Option<u64>,
) -> Member {
    let seconds = |s: u64| i64::try_from(s).unwrap_or(i64::MAX / 2);
    let mut member = member.clone();
    if let Credentials::Oidc {
        access_token: token,
        refresh_token: kept,
        refresh_expires_at,
        issued_at,
        ..
    } = &mut member.credentials
    {
        *token = access_token;
        if let Some(newer) = refresh_token {
            *kept = Some(newer);
        }
        let said = refresh_expires_in.map(|s| now.saturating_add(seconds(s)));
        *refresh_expires_at = match (*refresh_expires_at, said) {
            (Some(fixed), Some(said)) => Some(fixed.min(said)),
            (fixed, said) => fixed.or(said),
        };
        *issued_at = Some(now);
    }
    member.expires_at = now.saturating_add(seconds(expires_in));
    member
}

/// The upkeep of one sign-in's sessions in one store; cheap to clone.
#[derive(Clone)]
pub(crate) struct Upkeep(Arc<Inner>);

struct Inner {
    backend: SessionBackend,
    oidc: OidcClient,
    telemetry: Telemetry,
    /// The sessions' inactivity limit.
    idle: Duration,
    introspect_every: Option<Duration>,
    /// How long a session's refresh lease lasts.
    refresh_lease: Duration,
    /// This instance, as the leases name it.
    owner: String,
    /// The sessions this instance is refreshing now.
    in_flight: Mutex<HashSet<Id>>,
}

/// Where the sign-in routes find the upkeep, once started: set by
/// [`LinkedInSignIn::keep_sessions`](crate::LinkedInSignIn::keep_sessions), read by the
/// extractors (an `Extension`).
#[derive(Clone, Default)]
pub(crate) struct UpkeepSlot(Arc<OnceLock<Upkeep>>);

impl std::fmt::Debug for UpkeepSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UpkeepSlot")
            .field(&self.0.get().is_some())
            .finish()
    }
}

impl UpkeepSlot {
    /// The upkeep, once started.
    pub(crate) fn get(&self) -> Option<Upkeep> {
        self.0.get().cloned()
    }
}

/// What the upkeep of one sign-in's sessions needs of it, taken from the sign-in by
/// [`LinkedInSignIn::keep_sessions`](crate::LinkedInSignIn::keep_sessions).
pub(crate) struct UpkeepSettings {
    /// The OpenID Connect relying party that refreshes and introspects the tokens.
    pub oidc: OidcClient,
    /// The metrics.
    pub telemetry: Telemetry,
    /// The sessions' inactivity limit.
    pub idle: Duration,
    /// How often each live session's token is introspected, if ever.
    pub introspect_every: Option<Duration>,
    /// The bound on each call to LinkedIn (a session's refresh lease lasts three of them, at
    /// least [`REFRESH_LEASE`]).
    pub upstream_timeout: Duration,
    /// Where the sign-in routes find the upkeep once started.
    pub slot: UpkeepSlot,
}

/// Starts the upkeep of the OpenID Connect sessions in `backend` with `settings`, unless one
/// runs already in `settings.slot`.
pub(crate) fn start(settings: UpkeepSettings, backend: &SessionBackend) {
    let UpkeepSettings {
        oidc,
        telemetry,
        idle,
        introspect_every,
        upstream_timeout,
        slot,
    } = settings;
    let upkeep = Upkeep(Arc::new(Inner {
        backend: backend.clone(),
        oidc,
        telemetry,
        idle,
        introspect_every,
        refresh_lease: REFRESH_LEASE.max(upstream_timeout * 3),
        owner: rand::rng()
            .sample_iter(Alphanumeric)
            .take(16)
            .map(char::from)
            .collect(),
        in_flight: Mutex::new(HashSet::new()),
    }));
    if slot.0.set(upkeep.clone()).is_err() {
        return;
    }
    let period = upkeep.period();
    tracing::info!(
        introspect_every_seconds = introspect_every.map(|d| d.as_secs()),
        pass_seconds = period.as_secs(),
        "the upkeep of OpenID Connect sessions runs (refresh before expiry{})",
        if introspect_every.is_some() {
            ", introspection"
        } else {
            ""
        }
    );
    tokio::spawn(run(Arc::downgrade(&upkeep.0), period));
}

/// Tries to take the pass's lease every tick, and makes the pass when it does; ends when the
/// upkeep is dropped.
async fn run(upkeep: Weak<Inner>, period: Duration) {
    let tick = (period / 10).clamp(Duration::from_millis(200), Duration::from_secs(60));
    let lease = pass_lease(period);
    let mut failing = false;
    loop {
        let Some(inner) = upkeep.upgrade() else {
            return;
        };
        let upkeep = Upkeep(inner);
        match upkeep
            .0
            .backend
            .acquire_lease(&lease, &upkeep.0.owner, period)
            .await
        {
            Ok(true) => {
                failing = false;
                upkeep.pass(period).await;
            }
            Ok(false) => failing = false,
            Err(err) => {
                if !failing {
                    tracing::warn!(%err, "the upkeep could not reach the session store; it tries again");
                }
                failing = true;
            }
        }
        drop(upkeep);
        tokio::time::sleep(tick).await;
    }
}

/// How one session's refresh ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refresh {
    /// A new access token was written.
    Refreshed,
    /// Another instance holds the session's lease.
    Busy,
    /// Not due (another instance refreshed it), or nothing to refresh, or gone.
    NotDue,
    /// The provider refused the refresh token: it was dropped.
    Refused,
    /// The provider could not be asked: tried again once the lease ends.
    Failed,
}

impl Refresh {
    /// The `outcome` label of `lte_token_refreshes_total`, for the outcomes counted.
    fn label(self) -> Option<&'static str> {
        match self {
            Self::Refreshed => Some("refreshed"),
            Self::Refused => Some("refused"),
            Self::Failed => Some("failed"),
            Self::Busy | Self::NotDue => None,
        }
    }
}

impl Upkeep {
    /// The pass's period: the introspection interval, or [`REFRESH_PASS`].
    fn period(&self) -> Duration {
        self.0.introspect_every.unwrap_or(REFRESH_PASS)
    }

    /// Called with each member a request reads, at `now`: when the member's token is due
    /// for a refresh, one is started in the background (unless this instance already has
    /// one under way for session `id`). The request goes on with the token it has, which is
    /// still valid.
    pub(crate) fn nudge(&self, id: Id, member: &Member, now: i64) {
        if refresh_due_at(member).is_none_or(|due| due > now) {
            return;
        }
        let upkeep = self.clone();
        tokio::spawn(async move {
            upkeep.refresh(id, now).await;
        });
    }

    /// Refreshes session `id` if its token is due by `due_by` (Unix seconds), under its
    /// lease; counted and logged.
    async fn refresh(&self, id: Id, due_by: i64) -> Refresh {
        {
            let Ok(mut in_flight) = self.0.in_flight.lock() else {
                return Refresh::Busy;
            };
            if !in_flight.insert(id) {
                return Refresh::Busy;
            }
        }
        let outcome = self.refresh_leased(id, due_by).await;
        if let Ok(mut in_flight) = self.0.in_flight.lock() {
            in_flight.remove(&id);
        }
        if let Some(label) = outcome.label() {
            self.0.telemetry.token_refresh(label);
        }
        outcome
    }

    async fn refresh_leased(&self, id: Id, due_by: i64) -> Refresh {
        let backend = &self.0.backend;
        let lease = format!("refresh:{id}");
        match backend
            .acquire_lease(&lease, &self.0.owner, self.0.refresh_lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Refresh::Busy,
            Err(err) => {
                tracing::warn!(%err, "a token refresh could not take its lease in the session store");
                return Refresh::Failed;
            }
        }
        let outcome = match self.refresh_held(id, due_by).await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::warn!(%err, "a refreshed token could not be written to the session store");
                Refresh::Failed
            }
        };
        // A failed call keeps the lease: the next try waits for its end.
        if outcome != Refresh::Failed
            && let Err(err) = backend.release_lease(&lease, &self.0.owner).await
        {
            tracing::debug!(%err, "a refresh lease was left to end by itself");
        }
        outcome
    }

    /// The refresh itself, under the session's lease: the session read again (another
    /// instance may have refreshed it), the provider asked, the session written.
    async fn refresh_held(&self, id: Id, due_by: i64) -> session_store::Result<Refresh> {
        let backend = &self.0.backend;
        let Some(mut record) = backend.load(&id).await? else {
            return Ok(Refresh::NotDue);
        };
        let Some(member) = member_in(&record.data) else {
            return Ok(Refresh::NotDue);
        };
        // A token that expired unrefreshed has ended its session: it is not brought back.
        if refresh_due_at(&member).is_none_or(|due| due > due_by)
            || !member.is_valid_at(OffsetDateTime::now_utc())
        {
            return Ok(Refresh::NotDue);
        }
        let Credentials::Oidc {
            refresh_token: Some(refresh_token),
            ..
        } = &member.credentials
        else {
            return Ok(Refresh::NotDue);
        };
        let member_id = member.member_id.escape_debug().to_string();
        let answer = self.0.oidc.refresh(refresh_token).await;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let (updated, outcome) = match answer {
            Ok(answer) => {
                let updated = refreshed(
                    &member,
                    now,
                    answer.access_token,
                    answer.expires_in,
                    answer.refresh_token,
                    answer.refresh_expires_in,
                );
                tracing::info!(
                    member_id = %member_id,
                    expires_at = updated.expires_at,
                    "refreshed a member's LinkedIn access token"
                );
                (updated, Refresh::Refreshed)
            }
            Err(err @ UpstreamError::Rejected { .. }) => {
                tracing::warn!(
                    member_id = %member_id,
                    %err,
                    expires_at = member.expires_at,
                    "LinkedIn refused a refresh token: it is dropped, and the session ends when its access token expires"
                );
                let mut dropped = member.clone();
                if let Credentials::Oidc { refresh_token, .. } = &mut dropped.credentials {
                    *refresh_token = None;
                }
                (dropped, Refresh::Refused)
            }
            Err(err) => {
                tracing::warn!(
                    member_id = %member_id,
                    %err,
                    expires_at = member.expires_at,
                    "a member's LinkedIn access token could not be refreshed; tried again later, else the session ends when it expires"
                );
                return Ok(Refresh::Failed);
            }
        };
        // A session that its credentials ended now ends by its inactivity (at most one idle
        // period from now) or by the new credentials, whichever comes first; one that its
        // inactivity ends keeps that end (never past the new credentials').
        let idle_end = OffsetDateTime::now_utc() + super::to_time(self.0.idle);
        let creds_end =
            OffsetDateTime::from_unix_timestamp(credentials_end(&updated)).unwrap_or(idle_end);
        record.expiry_date = if record.expiry_date.unix_timestamp() >= credentials_end(&member) {
            idle_end.min(creds_end)
        } else {
            record.expiry_date.min(creds_end)
        };
        put_member(&mut record.data, &updated)?;
        backend.save(&record).await?;
        Ok(outcome)
    }

    /// One pass over every OpenID Connect session of the store: introspected (when on), and
    /// refreshed when due before the next pass. The pass's lease is renewed while it runs;
    /// should another instance hold it meanwhile, this pass stops.
    async fn pass(&self, period: Duration) {
        let backend = &self.0.backend;
        let started = Instant::now();
        if let Err(err) = backend.purge_leases().await {
            tracing::debug!(%err, "ended leases could not be deleted");
        }
        let ids = match backend.oidc_sessions().await {
            Ok(ids) => ids,
            Err(err) => {
                tracing::warn!(%err, "the upkeep could not list the OpenID Connect sessions");
                return;
            }
        };
        let per_second = match self.0.introspect_every {
            Some(_) => INTROSPECTIONS_PER_SECOND,
            None => LOADS_PER_SECOND,
        };
        let mut pace = tokio::time::interval(Duration::from_secs(1) / per_second);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed = Instant::now();
        let (mut visited, mut ended) = (0_u64, 0_u64);
        let due_by = OffsetDateTime::now_utc().unix_timestamp()
            + i64::try_from(period.as_secs()).unwrap_or(i64::MAX / 2);
        for id in &ids {
            if renewed.elapsed() >= period / 2 {
                match backend
                    .renew_lease(&pass_lease(period), &self.0.owner, period)
                    .await
                {
                    Ok(true) => renewed = Instant::now(),
                    Ok(false) => {
                        tracing::warn!(
                            "the upkeep's pass lost its lease to another instance; it stops"
                        );
                        return;
                    }
                    Err(err) => tracing::debug!(%err, "the upkeep's lease could not be renewed"),
                }
            }
            pace.tick().await;
            visited += 1;
            match self.visit(*id, due_by).await {
                Ok(true) => ended += 1,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(%err, "the upkeep could not read or end a session; it goes on");
                }
            }
        }
        let took = started.elapsed();
        tracing::debug!(
            sessions = visited,
            ended,
            seconds = took.as_secs_f64(),
            "the upkeep's pass is done"
        );
        if took > period {
            tracing::warn!(
                sessions = visited,
                seconds = took.as_secs(),
                period_seconds = period.as_secs(),
                "the upkeep's pass took longer than its period ({per_second} sessions a second): passes now follow each other"
            );
        }
    }

    /// Introspects session `id`'s token (when on), ending it (or all its member's) as the
    /// answer says, and refreshes it when due by `due_by`. Whether sessions ended.
    async fn visit(&self, id: Id, due_by: i64) -> session_store::Result<bool> {
        let backend = &self.0.backend;
        let Some(record) = backend.load(&id).await? else {
            return Ok(false);
        };
        let Some(member) = member_in(&record.data) else {
            return Ok(false);
        };
        let Credentials::Oidc { access_token, .. } = &member.credentials else {
            return Ok(false);
        };
        if !member.is_valid_at(OffsetDateTime::now_utc()) {
            // Its token expired unrefreshed (a refreshable session's record outlives it):
            // the session has ended, and goes now rather than at its idle end.
            backend.delete(&id).await?;
            return Ok(true);
        }
        if self.0.introspect_every.is_some() {
            let member_id = member.member_id.escape_debug().to_string();
            match self.0.oidc.introspect(access_token).await {
                Ok(status) => {
                    self.0.telemetry.introspection(status.label());
                    match status {
                        TokenStatus::Active => {}
                        TokenStatus::Revoked => {
                            let ended = self.end_withdrawn(&member).await?;
                            tracing::info!(
                                member_id = %member_id,
                                sessions_ended = ended,
                                "LinkedIn says the member's token was revoked: their sessions end"
                            );
                            return Ok(true);
                        }
                        TokenStatus::Expired | TokenStatus::Inactive => {
                            backend.delete(&id).await?;
                            tracing::info!(
                                member_id = %member_id,
                                status = status.label(),
                                "LinkedIn says a session's token no longer works: the session ends"
                            );
                            return Ok(true);
                        }
                    }
                }
                Err(err) => {
                    self.0.telemetry.introspection("error");
                    tracing::warn!(member_id = %member_id, %err, "a token could not be introspected; its session stays");
                }
            }
        }
        if refresh_due_at(&member).is_some_and(|due| due <= due_by) {
            self.refresh(id, due_by).await;
        }
        Ok(false)
    }

    /// Ends every session holding `member`'s token, which LinkedIn says was revoked (the
    /// member removed the app, which revokes all its tokens: the member's sessions with other
    /// tokens come up in the same pass), as a 401 from LinkedIn does: each browser is told
    /// "LinkedIn access was withdrawn". How many sessions ended.
    pub(crate) async fn end_withdrawn(&self, member: &Member) -> session_store::Result<u64> {
        self.0
            .backend
            .end_sessions_holding(member, Ended::LinkedinAccessWithdrawn, None)
            .await
    }
}

/// For a request's save of `record` (read before the upkeep refreshed it, perhaps): while
/// the member's token is due for a refresh, the credentials stored now win over the ones the
/// request read, since only the upkeep changes them within a session. `Some(merged)` when
/// they differ; `None` to save `record` as it is (and, outside the window, without a read).
pub(super) async fn keep_refreshed(
    backend: &SessionBackend,
    record: &Record,
) -> session_store::Result<Option<Record>> {
    let Some(ours) = member_in(&record.data) else {
        return Ok(None);
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if refresh_due_at(&ours).is_none_or(|due| due > now) {
        return Ok(None);
    }
    let Some(stored) = backend.load(&record.id).await? else {
        return Ok(None);
    };
    let Some(theirs) = member_in(&stored.data) else {
        return Ok(None);
    };
    if theirs.member_id != ours.member_id
        || (theirs.credentials == ours.credentials && theirs.expires_at == ours.expires_at)
    {
        return Ok(None);
    }
    let mut merged = record.clone();
    put_member(&mut merged.data, &theirs)?;
    merged.expiry_date = merged.expiry_date.max(stored.expiry_date);
    Ok(Some(merged))
}

impl SessionBackend {
    /// The ids of the unexpired OpenID Connect sessions, every member's.
    pub(crate) async fn oidc_sessions(&self) -> session_store::Result<Vec<Id>> {
        let index = &self.0.index;
        self.bounded("index", index.sessions_of_flow("oidc")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn oidc(expires_at: i64, issued_at: Option<i64>, refresh: Option<i64>) -> Member {
        Member {
            member_id: "m".into(),
            expires_at,
            credentials: Credentials::Oidc {
                access_token: Secret::new("a1"),
                name: None,
                email: None,
                refresh_token: refresh.map(|_| Secret::new("r1")),
                refresh_expires_at: refresh.filter(|end| *end > 0),
                issued_at,
            },
        }
    }

    #[test]
    fn the_window_is_the_last_quarter_of_a_tokens_life_and_at_most_its_last_day() {
        assert_eq!(refresh_window(40), 10);
        assert_eq!(refresh_window(4 * 86_400), 86_400);
        // LinkedIn's 60-day tokens: the last day.
        assert_eq!(refresh_window(60 * 86_400), 86_400);
        assert_eq!(refresh_window(-5), 0);
    }

    #[test]
    fn a_token_is_due_only_with_a_refresh_token_that_outlives_it() {
        // 40 s of life from 1,000: due at 1,030.
        assert_eq!(
            refresh_due_at(&oidc(1_040, Some(1_000), Some(0))),
            Some(1_030)
        );
        // Without the issue time (a session stored before), LinkedIn's 60 days: the last day.
        assert_eq!(
            refresh_due_at(&oidc(10_000_000, None, Some(0))),
            Some(10_000_000 - 86_400)
        );
        assert_eq!(refresh_due_at(&oidc(1_040, Some(1_000), None)), None);
        // A refresh token that ends with (or before) the access token cannot lengthen it.
        assert_eq!(refresh_due_at(&oidc(1_040, Some(1_000), Some(1_040))), None);
        assert_eq!(
            refresh_due_at(&oidc(1_040, Some(1_000), Some(1_041))),
            Some(1_030)
        );
        let jsapi = Member {
            member_id: "m".into(),
            expires_at: 1_040,
            credentials: Credentials::Jsapi {
                oauth_token: "t".into(),
                oauth_token_secret: Secret::new("s"),
            },
        };
        assert_eq!(refresh_due_at(&jsapi), None);
    }

    #[test]
    fn a_refresh_never_extends_the_refresh_tokens_fixed_end() {
        let member = oidc(1_040, Some(1_000), Some(5_000));
        // The answer says the refresh token lives 9,000 s more: its end stays at 5,000.
        let after = refreshed(&member, 1_035, Secret::new("a2"), 40, None, Some(9_000));
        assert_eq!(after.expires_at, 1_075);
        let Credentials::Oidc {
            access_token,
            refresh_token,
            refresh_expires_at,
            issued_at,
            ..
        } = &after.credentials
        else {
            panic!("still OpenID Connect");
        };
        assert_eq!(access_token.expose(), "a2");
        assert_eq!(refresh_token.as_ref().map(Secret::expose), Some("r1"));
        assert_eq!(
            (*refresh_expires_at, *issued_at),
            (Some(5_000), Some(1_035))
        );
        // A sooner end is taken, and a new refresh token replaces the old one.
        let sooner = refreshed(
            &member,
            1_035,
            Secret::new("a3"),
            40,
            Some(Secret::new("r2")),
            Some(100),
        );
        let Credentials::Oidc {
            refresh_token,
            refresh_expires_at,
            ..
        } = &sooner.credentials
        else {
            panic!("still OpenID Connect");
        };
        assert_eq!(refresh_token.as_ref().map(Secret::expose), Some("r2"));
        assert_eq!(*refresh_expires_at, Some(1_135));
        // An end first learnt at a refresh is kept.
        let unknown = oidc(1_040, Some(1_000), Some(-1));
        let learnt = refreshed(&unknown, 1_035, Secret::new("a4"), 40, None, Some(600));
        assert!(matches!(
            learnt.credentials,
            Credentials::Oidc {
                refresh_expires_at: Some(1_635),
                ..
            }
        ));
    }

    #[test]
    fn a_session_stored_before_refresh_tokens_still_reads() {
        let stored = serde_json::json!({
            "member_id": "m",
            "expires_at": 5,
            "credentials": {"flow": "oidc", "access_token": "a", "name": null, "email": null},
        });
        let member: Member = serde_json::from_value(stored).unwrap();
        assert!(matches!(
            member.credentials,
            Credentials::Oidc {
                refresh_token: None,
                refresh_expires_at: None,
                issued_at: None,
                ..
            }
        ));
        // And one without a refresh token is written as before.
        let written = serde_json::to_value(oidc(5, None, None)).unwrap();
        assert!(
            written["credentials"].get("refresh_token").is_none(),
            "{written}"
        );
    }
}
