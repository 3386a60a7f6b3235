//! What a session holds once someone signed in: a [`Member`] with the [`Credentials`] of the
//! flow that signed them in, and the extractors through which handlers reach it
//! ([`MemberSession`], [`Connected`]) without knowing the flow, the key or the store.

use std::fmt;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::session::Id;
use tower_sessions::session_store;
use tower_sessions::{Expiry, Session};

use crate::error::AppError;
use crate::linkedin::oidc::PendingSignIn;
use crate::secret::Secret;
use crate::telemetry::Telemetry;

/// The session rules every route shares.
#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    /// A session ends after this much inactivity (or when its credentials expire).
    pub idle: Duration,
}

impl Default for SessionPolicy {
    /// `SESSION_IDLE_MINUTES`'s default: 24 hours.
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// The credentials one sign-in flow obtained. A new flow is a new variant, not a copy of the
/// session code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flow", rename_all = "lowercase")]
pub enum Credentials {
    /// OAuth 1.0a REST credentials from the JSAPI cookie exchange.
    Jsapi {
        /// The OAuth 1.0a token.
        oauth_token: String,
        /// The OAuth 1.0a token secret (never leaves the server).
        oauth_token_secret: Secret,
    },
    /// An OAuth 2.0 access token from "Sign In with LinkedIn using OpenID Connect", with the
    /// name and email of the id_token.
    Oidc {
        /// The Bearer token for userinfo (never leaves the server).
        access_token: Secret,
        /// The member's name, when the provider gave one.
        name: Option<String>,
        /// The member's email, when the provider gave one.
        email: Option<String>,
        /// The refresh token, for a partner app that gets one (never leaves the server).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh_token: Option<Secret>,
        /// The refresh token's fixed end (Unix seconds): set at sign-in, never extended by a
        /// refresh (LinkedIn's refresh tokens keep the life of the first grant).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refresh_expires_at: Option<i64>,
        /// When the access token was issued (Unix seconds): it is refreshed in the last
        /// quarter of its life (at most its last day).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issued_at: Option<i64>,
    },
}

/// A way of signing in: the JSAPI cookie exchange or OpenID Connect. Shown as `jsapi` or
/// `oidc` in `/session`, the metrics' `flow` label and the log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// The JSAPI cookie exchanged for OAuth 1.0a credentials.
    Jsapi,
    /// "Sign In with LinkedIn using OpenID Connect".
    Oidc,
}

impl Flow {
    /// `jsapi` or `oidc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jsapi => "jsapi",
            Self::Oidc => "oidc",
        }
    }

    /// Counts one sign-in through this flow that ended with `outcome` (`connected`,
    /// `already_connected` or an error code) and writes its log line at info, with the member
    /// (empty when none was signed in).
    pub fn record(self, telemetry: &Telemetry, outcome: &'static str, member_id: &str) {
        telemetry.exchange(self.as_str(), outcome);
        tracing::info!(flow = self.as_str(), outcome, member_id = ?member_id, "exchange");
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Credentials {
    /// The flow that obtained them.
    pub fn flow(&self) -> Flow {
        match self {
            Self::Jsapi { .. } => Flow::Jsapi,
            Self::Oidc { .. } => Flow::Oidc,
        }
    }

    /// Whether `other` holds the same LinkedIn token (the one LinkedIn refuses or accepts):
    /// the OAuth 1.0a token, or the OpenID Connect access token. Compared in constant time.
    pub(crate) fn same_token(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        let token = |credentials: &Self| match credentials {
            Self::Jsapi { oauth_token, .. } => (Flow::Jsapi, oauth_token.as_bytes().to_vec()),
            Self::Oidc { access_token, .. } => {
                (Flow::Oidc, access_token.expose().as_bytes().to_vec())
            }
        };
        let ((flow, mine), (other_flow, theirs)) = (token(self), token(other));
        flow == other_flow && bool::from(mine.ct_eq(&theirs))
    }
}

/// Why a session ended without its browser asking. A tombstone that holds only the reason
/// takes the session's place for a while ([`TOMBSTONE_TTL`]), under its id, so that the
/// browser that held it hears why (`/session` answers `"ended"`): written there when this
/// request's session ends ([`MemberSession::end_because`]); kept under [`tombstone_id`] and
/// moved back at the browser's next request when the store ends the sessions of other
/// browsers (`SessionBackend::end_sessions_holding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Ended {
    /// LinkedIn answered 401 to the member's credentials: the member removed the app, or
    /// the token was revoked or expired.
    LinkedinAccessWithdrawn,
}

impl Ended {
    /// `linkedin_access_withdrawn`: the error code of the same name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::LinkedinAccessWithdrawn => "linkedin_access_withdrawn",
        }
    }
}

/// How long a tombstone says why its session ended: a day, the default idle limit of a
/// session, so that a device that comes back within it is told.
pub(crate) const TOMBSTONE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Where the tombstone of session `id` is kept when the store ends it, until its browser asks
/// again: an id derived one way (SHA-256) from it, the same in every instance. Not `id`
/// itself: the session's record is deleted, so that a save of it still in flight (another
/// request of that browser) writes nothing back (every store's save only updates a record
/// that exists), and the tombstone is never overwritten with the member.
pub(crate) fn tombstone_id(id: &Id) -> Id {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("lte-tombstone {id}").as_bytes(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    Id(i128::from_le_bytes(bytes))
}

/// Why the session whose data is `data` ended, when it is a tombstone (it holds no member).
pub(crate) fn ended_in(
    data: &std::collections::HashMap<String, serde_json::Value>,
) -> Option<Ended> {
    if data.contains_key(MemberSession::KEY) {
        return None;
    }
    data.get(MemberSession::ENDED)
        .and_then(|value| serde_json::from_value(value.clone()).ok())
}

/// The data of a tombstone: only the reason.
pub(crate) fn tombstone(why: Ended) -> std::collections::HashMap<String, serde_json::Value> {
    [(
        MemberSession::ENDED.to_owned(),
        serde_json::Value::String(why.as_str().to_owned()),
    )]
    .into()
}

/// A signed-in member, as the session keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// LinkedIn's id for the member.
    pub member_id: String,
    /// When the credentials expire, as a Unix timestamp.
    pub expires_at: i64,
    /// What the flow obtained.
    pub credentials: Credentials,
}

impl Member {
    /// A member just signed in at `now` (Unix seconds) with `credentials` valid for
    /// `expires_in` seconds.
    pub fn signed_in(
        member_id: String,
        credentials: Credentials,
        expires_in: u64,
        now: i64,
    ) -> Self {
        Self {
            member_id,
            expires_at: now.saturating_add(i64::try_from(expires_in).unwrap_or(i64::MAX / 2)),
            credentials,
        }
    }

    /// The member's name, when the flow gave one (OpenID Connect's `name` claim). The
    /// `member_id` is no name: for OpenID Connect it is the opaque, per-app `sub`.
    pub fn name(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::Oidc { name, .. } => name.as_deref(),
            Credentials::Jsapi { .. } => None,
        }
    }

    /// Whether the credentials are still valid at `now`.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at > now.unix_timestamp()
    }
}

/// A request's session, typed: the one place that names the session keys. Extract it in a
/// handler that reads or changes who is signed in.
pub struct MemberSession {
    session: Session,
    policy: SessionPolicy,
    /// The request's `User-Agent`, described at sign-in for the member's list of sessions.
    user_agent: Option<String>,
    /// Refreshes the member's token when it is due (the sign-in routes set it).
    upkeep: Option<super::upkeep::Upkeep>,
}

impl MemberSession {
    /// The session key of the member. A record that holds the member under any other key
    /// reads as "not connected".
    const KEY: &'static str = "lte.member";
    /// The session key of a sign-in in progress.
    const PENDING: &'static str = "lte.oidc.pending";
    /// The session key of the browser that signed in ([`device`](super::device)), which the
    /// member index keeps beside the session.
    const BROWSER: &'static str = "lte.browser";
    /// The session key of a tombstone: why the session ended ([`Ended`]).
    const ENDED: &'static str = "lte.ended";

    /// Remembers a sign-in that has been sent to the provider (one at a time: a newer one
    /// replaces an older one). A session that holds nothing else lives only as long as the
    /// sign-in may take, so that anonymous starts cannot fill the store with day-long
    /// sessions; a signed-in member's session keeps its own expiry.
    pub async fn begin_sign_in(&self, pending: &PendingSignIn) -> Result<(), session_store::Error> {
        let signed_in = self.get::<Member>(Self::KEY).await?.is_some();
        self.forget_why_it_ended().await?;
        self.session
            .insert(Self::PENDING, pending)
            .await
            .map_err(store_error)?;
        if !signed_in {
            let ends =
                OffsetDateTime::from_unix_timestamp(pending.expires_at).unwrap_or_else(|_| {
                    OffsetDateTime::now_utc() + super::to_time(PendingSignIn::LIFETIME)
                });
            self.session.set_expiry(Some(Expiry::AtDateTime(ends)));
        }
        Ok(())
    }

    /// The pending sign-in whose `state` this is, removed so that it cannot be used twice.
    /// A state that does not match (or has expired) is `None`, and leaves the pending sign-in
    /// alone: a stranger's request cannot cancel someone's sign-in.
    pub async fn take_sign_in(
        &self,
        state: &str,
    ) -> Result<Option<PendingSignIn>, session_store::Error> {
        let Some(pending) = self.get::<PendingSignIn>(Self::PENDING).await? else {
            return Ok(None);
        };
        if !pending.state.matches(state) {
            return Ok(None);
        }
        self.session
            .remove_value(Self::PENDING)
            .await
            .map_err(store_error)?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        Ok((pending.expires_at > now).then_some(pending))
    }

    /// Wraps a request's session.
    pub fn new(session: Session, policy: SessionPolicy) -> Self {
        Self {
            session,
            policy,
            user_agent: None,
            upkeep: None,
        }
    }

    /// The session's id, once it has one (a session never saved has none).
    pub(crate) fn id(&self) -> Option<tower_sessions::session::Id> {
        self.session.id()
    }

    /// The member when present and unexpired. Expired credentials end the session; a session
    /// in use lives on for another idle period (never past its credentials). A record that
    /// cannot be decoded reads as "not connected".
    pub async fn member(&self) -> Result<Option<Member>, session_store::Error> {
        let Some(member) = self.get::<Member>(Self::KEY).await? else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        if !member.is_valid_at(now) {
            self.end().await?;
            return Ok(None);
        }
        if let (Some(upkeep), Some(id)) = (&self.upkeep, self.session.id()) {
            upkeep.nudge(id, &member, now.unix_timestamp());
        }
        self.set_expiry(&member, now);
        Ok(Some(member))
    }

    /// The value under `key`; one that does not decode reads as absent.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, session_store::Error> {
        match self.session.get::<T>(key).await {
            Ok(value) => Ok(value),
            Err(tower_sessions::session::Error::Store(err)) => Err(err),
            Err(tower_sessions::session::Error::SerdeJson(err)) => {
                tracing::debug!(%err, key, "a session value that does not decode reads as absent");
                Ok(None)
            }
        }
    }

    /// Signs `member` in. A session that already has an id gets a new one, so that nobody can
    /// fix a session id in advance; the old record is removed only once the new one is
    /// written (see `session::guard`).
    pub async fn sign_in(&self, member: &Member) -> Result<(), session_store::Error> {
        if self.session.id().is_some() {
            self.session.cycle_id().await.map_err(store_error)?;
        }
        self.forget_why_it_ended().await?;
        self.session
            .insert(Self::KEY, member)
            .await
            .map_err(store_error)?;
        let browser = super::device::describe(self.user_agent.as_deref());
        self.session
            .insert(Self::BROWSER, browser)
            .await
            .map_err(store_error)?;
        self.set_expiry(member, OffsetDateTime::now_utc());
        Ok(())
    }

    /// Ends the session: its record is deleted and its cookie cleared. A request without a
    /// session has nothing to end.
    pub async fn end(&self) -> Result<(), session_store::Error> {
        if self.session.id().is_none() {
            return Ok(());
        }
        self.session.flush().await.map_err(store_error)
    }

    /// Ends the session because of `why`: its member (and any sign-in in progress) goes, and
    /// it is kept as a tombstone, under the same id and cookie, for [`TOMBSTONE_TTL`], so
    /// that [`ended`](Self::ended) can tell the browser why. A request without a stored
    /// session has nothing to end.
    pub(crate) async fn end_because(&self, why: Ended) -> Result<(), session_store::Error> {
        if self.session.id().is_none() {
            return Ok(());
        }
        self.session.clear().await;
        self.session
            .insert(Self::ENDED, why.as_str())
            .await
            .map_err(store_error)?;
        self.session.set_expiry(Some(Expiry::AtDateTime(
            OffsetDateTime::now_utc() + super::to_time(TOMBSTONE_TTL),
        )));
        Ok(())
    }

    /// Why this session ended, when it is a tombstone ([`end_because`](Self::end_because), or
    /// the store's `SessionBackend::end_sessions_holding`).
    pub(crate) async fn ended(&self) -> Result<Option<Ended>, session_store::Error> {
        self.get::<Ended>(Self::ENDED).await
    }

    /// A new sign-in forgets why the session ended before.
    async fn forget_why_it_ended(&self) -> Result<(), session_store::Error> {
        if self
            .session
            .get_value(Self::ENDED)
            .await
            .map_err(store_error)?
            .is_some()
        {
            self.session
                .remove_value(Self::ENDED)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    /// Another handle on the same session (the member's client keeps one, to end the session
    /// when LinkedIn withdraws the member's access).
    pub(crate) fn handle(&self) -> Self {
        Self {
            session: self.session.clone(),
            policy: self.policy,
            user_agent: self.user_agent.clone(),
            upkeep: self.upkeep.clone(),
        }
    }

    /// A session lives until the earlier of "idle for too long" and "credentials expired"
    /// (for a token that can be refreshed, the refresh token's end: the member still reads
    /// as signed out once the access token itself has expired unrefreshed).
    fn set_expiry(&self, member: &Member, now: OffsetDateTime) {
        let idle_end = now + super::to_time(self.policy.idle);
        let creds_end = OffsetDateTime::from_unix_timestamp(super::upkeep::credentials_end(member))
            .unwrap_or(idle_end);
        self.session
            .set_expiry(Some(Expiry::AtDateTime(idle_end.min(creds_end))));
    }
}

/// The unexpired member of a session record, read without touching the session: for
/// answers that must never write (`/auth/check`). A value that does not decode reads as
/// absent.
pub(crate) fn member_of_record(
    record: &tower_sessions::session::Record,
    now: OffsetDateTime,
) -> Option<Member> {
    if record.expiry_date <= now {
        return None;
    }
    record
        .data
        .get(MemberSession::KEY)
        .and_then(|value| serde_json::from_value::<Member>(value.clone()).ok())
        .filter(|member| member.is_valid_at(now))
}

/// Whether a session's data is only a sign-in in progress (no member): such a session is
/// short-lived, and the memory store evicts it before any signed-in member.
pub(crate) fn holds_only_a_pending_sign_in(
    data: &std::collections::HashMap<String, serde_json::Value>,
) -> bool {
    data.len() == 1 && data.contains_key(MemberSession::PENDING)
}

/// The signed-in member a session's data holds, if any (for the member index).
pub(crate) fn member_in(
    data: &std::collections::HashMap<String, serde_json::Value>,
) -> Option<Member> {
    data.get(MemberSession::KEY)
        .and_then(|value| serde_json::from_value(value.clone()).ok())
}

/// The description of the browser that signed the session in ([`super::device`]), when the
/// sign-in recorded one (sessions signed in before it did have none).
pub(crate) fn browser_in(
    data: &std::collections::HashMap<String, serde_json::Value>,
) -> Option<&str> {
    data.get(MemberSession::BROWSER)
        .and_then(serde_json::Value::as_str)
}

/// A session's data holding `member`, signed in with `browser`: as [`MemberSession::sign_in`]
/// leaves it (for the stores' tests).
#[cfg(test)]
pub(crate) fn signed_in_data(
    member: &Member,
    browser: &str,
) -> std::collections::HashMap<String, serde_json::Value> {
    [
        (
            MemberSession::KEY.to_owned(),
            serde_json::to_value(member).unwrap_or_default(),
        ),
        (MemberSession::BROWSER.to_owned(), browser.into()),
    ]
    .into()
}

/// Writes `member` into a session's data, as [`MemberSession::sign_in`] keeps it (for the
/// upkeep, which changes a stored session outside any request).
pub(crate) fn put_member(
    data: &mut std::collections::HashMap<String, serde_json::Value>,
    member: &Member,
) -> Result<(), session_store::Error> {
    let value =
        serde_json::to_value(member).map_err(|e| session_store::Error::Encode(e.to_string()))?;
    data.insert(MemberSession::KEY.to_owned(), value);
    Ok(())
}

fn store_error(err: tower_sessions::session::Error) -> session_store::Error {
    match err {
        tower_sessions::session::Error::Store(err) => err,
        tower_sessions::session::Error::SerdeJson(err) => {
            session_store::Error::Encode(err.to_string())
        }
    }
}

/// Needs a session layer of this crate's tower-sessions (0.14; re-exported as
/// `linkedin_token_exchange::tower_sessions`, ready-made by `LinkedInSignIn::session_layer`)
/// over the route: without one, 503 `session_layer_missing`, logged at error once. The
/// policy is the first of: an `Extension<SessionPolicy>` (the sign-in router sets one), the
/// session layer's inactivity expiry, the default. It is kept in the request, so every
/// extractor of one request applies the same.
impl<S> FromRequestParts<S> for MemberSession
where
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let Some(session) = parts.extensions.get::<Session>().cloned() else {
            static LOGGED: std::sync::Once = std::sync::Once::new();
            LOGGED.call_once(|| {
                tracing::error!("{} (this is logged once)", AppError::SessionLayerMissing);
            });
            return Err(AppError::SessionLayerMissing);
        };
        let policy = match parts.extensions.get::<SessionPolicy>() {
            Some(policy) => *policy,
            None => {
                let policy = SessionPolicy::of_layer(session.expiry()).unwrap_or_default();
                parts.extensions.insert(policy);
                policy
            }
        };
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let upkeep = parts
            .extensions
            .get::<super::upkeep::UpkeepSlot>()
            .and_then(super::upkeep::UpkeepSlot::get);
        Ok(Self {
            user_agent,
            upkeep,
            ..Self::new(session, policy)
        })
    }
}

impl SessionPolicy {
    /// The policy a session layer's expiry implies: its inactivity limit, when it has one.
    fn of_layer(expiry: Option<Expiry>) -> Option<Self> {
        match expiry {
            Some(Expiry::OnInactivity(idle)) => Some(Self {
                idle: Duration::try_from(idle)
                    .ok()
                    .filter(|idle| !idle.is_zero())?,
            }),
            _ => None,
        }
    }
}

/// The signed-in member; a request without one is refused with 401 `not_connected`.
pub struct Connected(pub Member);

impl<S> FromRequestParts<S> for Connected
where
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let session = MemberSession::from_request_parts(parts, state).await?;
        session
            .member()
            .await?
            .map(Connected)
            .ok_or(AppError::NotConnected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(expires_at: i64) -> Member {
        Member {
            member_id: "m".into(),
            expires_at,
            credentials: Credentials::Jsapi {
                oauth_token: "t".into(),
                oauth_token_secret: Secret::new("s3cr3t"),
            },
        }
    }

    #[test]
    fn the_policy_follows_the_layers_inactivity_expiry_only() {
        let idle = SessionPolicy::of_layer(Some(Expiry::OnInactivity(time::Duration::minutes(5))));
        assert_eq!(idle.map(|p| p.idle), Some(Duration::from_secs(300)));
        assert!(SessionPolicy::of_layer(None).is_none());
        assert!(SessionPolicy::of_layer(Some(Expiry::OnSessionEnd)).is_none());
        let at = Expiry::AtDateTime(OffsetDateTime::from_unix_timestamp(0).unwrap());
        assert!(SessionPolicy::of_layer(Some(at)).is_none());
        let negative = Expiry::OnInactivity(time::Duration::seconds(-1));
        assert!(SessionPolicy::of_layer(Some(negative)).is_none());
    }

    #[test]
    fn credentials_expire_at_their_timestamp() {
        let member = member(1_000);
        assert!(member.is_valid_at(OffsetDateTime::from_unix_timestamp(999).unwrap()));
        assert!(!member.is_valid_at(OffsetDateTime::from_unix_timestamp(1_000).unwrap()));
        assert!(!format!("{member:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_signed_in_member_expires_after_its_credentials_lifetime() {
        let credentials = member(0).credentials;
        let member = Member::signed_in("m".into(), credentials.clone(), 60, 1_000);
        assert_eq!(member.expires_at, 1_060);
        let forever = Member::signed_in("m".into(), credentials, u64::MAX, i64::MAX - 1);
        assert_eq!(forever.expires_at, i64::MAX);
    }

    #[test]
    fn the_flow_is_a_tag_of_the_stored_record() {
        let json = serde_json::to_value(member(5)).unwrap();
        assert_eq!(json["credentials"]["flow"], "jsapi");
        assert_eq!(member(5).credentials.flow(), Flow::Jsapi);
        assert_eq!(serde_json::to_value(Flow::Oidc).unwrap(), "oidc");
        assert_eq!(Flow::Jsapi.to_string(), "jsapi");
        let back: Member = serde_json::from_value(json).unwrap();
        assert_eq!(back, member(5));
    }
}
