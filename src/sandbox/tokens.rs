//! The sandbox's ledger of what it granted, shared by its JSAPI side, its OpenID Connect
//! provider and its REST routes: the member's consent to the app, every credential it issued
//! with its lifetime (so that a token really stops working when it expires, and introspection
//! can tell `expired` from `revoked`), the removals that revoke a member's credentials, the
//! daily call quota and the signed picture URLs.
//!
//! The clock is an argument everywhere (`now`, unix seconds), so that the rules are tested
//! here without waiting; the handlers pass the real one. What LinkedIn does, and where that is
//! written down:
//! - access tokens live 60 days; refresh tokens (approved partners only) a fixed 365 days
//!   that refreshing does not extend, and an access token never outlives its refresh token
//!   (learn.microsoft.com, "Programmatic Refresh Tokens");
//! - a member removes an app on LinkedIn's "Permitted services" page, which revokes its
//!   tokens (learn.microsoft.com, "Error Handling": "The token has been revoked by the member
//!   from their privacy settings");
//! - daily limits reset at midnight UTC (learn.microsoft.com, "Rate Limits");
//! - picture URLs are signed and carry their expiry as `e=<unix seconds>`
//!   (tomquirk/linkedin-api#93, joshuatz/linkedin-to-jsonresume#75).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use moka::sync::Cache;

/// LinkedIn's access tokens: 60 days.
pub(crate) const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(5_184_000);
/// The longest lifetime the sandbox accepts (ten years): its caches cannot keep more.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(315_360_000);
/// How long an expired credential is still known (so that introspection says `expired`
/// rather than not knowing it).
pub(crate) const EXPIRED_KEPT: Duration = Duration::from_secs(7 * 86_400);
/// Bounds on memory.
const MAX_CREDENTIALS: u64 = 200_000;
const MAX_MEMBERS: u64 = 200_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// The terms on which the sandbox grants credentials (`SANDBOX_TOKEN_TTL`,
/// `SANDBOX_REFRESH_TOKENS` with `SANDBOX_REFRESH_TTL`, `SANDBOX_DAILY_QUOTA`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TokenRules {
    /// How long an access token lives (both flows).
    pub token_ttl: Duration,
    /// How long a refresh token lives, from its first issue; `None`: the app is no partner,
    /// and the token answers carry no refresh token.
    pub refresh_ttl: Option<Duration>,
    /// Calls per member per UTC day to the API routes; `None`: no limit.
    pub daily_quota: Option<u64>,
}

impl Default for TokenRules {
    fn default() -> Self {
        Self {
            token_ttl: DEFAULT_TOKEN_TTL,
            refresh_ttl: None,
            daily_quota: None,
        }
    }
}

impl TokenRules {
    /// `token_ttl` and `refresh_ttl` at most [`MAX_TTL`] and at least a second.
    pub(crate) fn bounded(self) -> Self {
        let bound = |ttl: Duration| ttl.clamp(Duration::from_secs(1), MAX_TTL);
        Self {
            token_ttl: bound(self.token_ttl),
            refresh_ttl: self.refresh_ttl.map(bound),
            daily_quota: self.daily_quota,
        }
    }
}

/// Which way a credential was granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Flow {
    /// The JavaScript API's sign-in, and the OAuth 1.0a credentials exchanged for it.
    Jsapi,
    /// OpenID Connect's consent, and its bearer and refresh tokens.
    Oidc,
}

impl Flow {
    /// The flow's name on the permitted-services page.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Jsapi => "JavaScript API (OAuth 1.0a)",
            Self::Oidc => "Sign In with LinkedIn using OpenID Connect",
        }
    }
}

/// One credential the sandbox issued: whose, for what, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Issued {
    /// The sandbox member (not the pairwise subject).
    pub member: String,
    /// The scopes granted, comma-separated as LinkedIn writes them.
    pub scope: String,
    /// When the member first consented to the app.
    pub authorized_at: i64,
    /// When this credential was issued.
    pub created_at: i64,
    /// When it stops working.
    pub expires_at: i64,
    /// Its place in the order of issue: a removal revokes every credential issued before it.
    serial: u64,
}

/// What a credential is now, in introspection's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// It works.
    Active,
    /// Its lifetime is over.
    Expired,
    /// The member removed the app since it was issued.
    Revoked,
}

impl Status {
    /// `active`, `expired` or `revoked`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// A member's consent to the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Consent {
    /// Every scope the member allowed.
    pub scopes: BTreeSet<String>,
    /// The flows the member signed in with.
    pub flows: BTreeSet<Flow>,
    /// When the member first allowed the app.
    pub authorized_at: i64,
}

/// A picture URL's check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PictureCheck {
    /// Signed here and not expired.
    Valid,
    /// Signed here, but `e` is past.
    Expired,
    /// Not signed here (`e` or the asset changed, or `t` is made up).
    Forged,
}

/// The ledger. One per sandbox; cheap to share (`Arc`).
pub(crate) struct Ledger {
    rules: TokenRules,
    /// The order of issue.
    serial: AtomicU64,
    /// Member -> the last serial their removal of the app revoked.
    revoked_through: Cache<String, u64>,
    /// Member -> their consent.
    consents: Cache<String, Arc<Consent>>,
    /// OpenID Connect access tokens.
    bearer: Cache<String, Arc<Issued>>,
    /// OpenID Connect refresh tokens.
    refresh: Cache<String, Arc<Issued>>,
    /// `(member, UTC day)` -> calls so far.
    calls: Cache<(String, i64), Arc<AtomicU64>>,
    /// Signs picture URLs.
    picture_key: ring::hmac::Key,
}

impl Ledger {
    /// An empty ledger on `rules` (bounded first).
    pub(crate) fn new(rules: TokenRules) -> Self {
        let rules = rules.bounded();
        let longest = rules.refresh_ttl.unwrap_or_default().max(rules.token_ttl) + EXPIRED_KEPT;
        let credentials = |ttl: Duration| {
            Cache::builder()
                .max_capacity(MAX_CREDENTIALS)
                .time_to_live(ttl + EXPIRED_KEPT)
                .build()
        };
        let rng = ring::rand::SystemRandom::new();
        let picture_key =
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
                ring::hmac::Key::new(ring::hmac::HMAC_SHA256, uuid::Uuid::new_v4().as_bytes())
            });
        Self {
            rules,
            serial: AtomicU64::new(0),
            revoked_through: Cache::builder()
                .max_capacity(MAX_MEMBERS)
                .time_to_live(longest)
                .build(),
            consents: Cache::builder().max_capacity(MAX_MEMBERS).build(),
            bearer: credentials(rules.token_ttl),
            refresh: credentials(rules.refresh_ttl.unwrap_or(rules.token_ttl)),
            calls: Cache::builder()
                .max_capacity(MAX_MEMBERS)
                .time_to_live(Duration::from_secs(2 * SECONDS_PER_DAY as u64))
                .build(),
            picture_key,
        }
    }

    /// The rules it was made with.
    pub(crate) fn rules(&self) -> TokenRules {
        self.rules
    }

    /// The next serial.
    fn next_serial(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A stamp for something short-lived that a removal must also void (an authorization
    /// code, a JSAPI access token): compare it with [`Self::revoked`].
    pub(crate) fn stamp(&self) -> u64 {
        self.next_serial()
    }

    /// Whether `member` removed the app after `stamp` was taken.
    pub(crate) fn revoked(&self, member: &str, stamp: u64) -> bool {
        self.revoked_through
            .get(member)
            .is_some_and(|through| stamp <= through)
    }

    /// A credential for `member` with `scope`, living `ttl` from `now` (but never past
    /// `until`, a refresh token's end).
    pub(crate) fn issue(
        &self,
        member: &str,
        scope: &str,
        ttl: Duration,
        until: Option<i64>,
        now: i64,
    ) -> Issued {
        let lifetime = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let mut expires_at = now.saturating_add(lifetime);
        if let Some(until) = until {
            expires_at = expires_at.min(until);
        }
        Issued {
            member: member.to_owned(),
            scope: scope.to_owned(),
            authorized_at: self
                .consents
                .get(member)
                .map_or(now, |consent| consent.authorized_at),
            created_at: now,
            expires_at,
            serial: self.next_serial(),
        }
    }

    /// What `issued` is at `now`. A revoked credential stays revoked after it would have
    /// expired.
    pub(crate) fn status(&self, issued: &Issued, now: i64) -> Status {
        if self.revoked(&issued.member, issued.serial) {
            Status::Revoked
        } else if now >= issued.expires_at {
            Status::Expired
        } else {
            Status::Active
        }
    }

    /// An OpenID Connect access token for `member`: its value and what it is. With refresh
    /// tokens on, `refresh` is the refresh token's end, which the access token does not
    /// outlive.
    pub(crate) fn issue_bearer(
        &self,
        member: &str,
        scope: &str,
        refresh_end: Option<i64>,
        now: i64,
    ) -> (String, Arc<Issued>) {
        let issued = Arc::new(self.issue(member, scope, self.rules.token_ttl, refresh_end, now));
        let token = random_token();
        self.bearer.insert(token.clone(), issued.clone());
        (token, issued)
    }

    /// A refresh token for `member` (only with refresh tokens on): its value and what it is.
    pub(crate) fn issue_refresh(
        &self,
        member: &str,
        scope: &str,
        now: i64,
    ) -> Option<(String, Arc<Issued>)> {
        let ttl = self.rules.refresh_ttl?;
        let issued = Arc::new(self.issue(member, scope, ttl, None, now));
        let token = random_token();
        self.refresh.insert(token.clone(), issued.clone());
        Some((token, issued))
    }

    /// The OpenID Connect access token `token`, when the sandbox issued it (in any state).
    pub(crate) fn bearer(&self, token: &str) -> Option<Arc<Issued>> {
        self.bearer.get(token)
    }

    /// The refresh token `token`, when the sandbox issued it (in any state).
    pub(crate) fn refresh_token(&self, token: &str) -> Option<Arc<Issued>> {
        self.refresh.get(token)
    }

    /// Records that `member` allowed the app `scopes` through `flow` (adding to what they
    /// allowed before; the first consent's time stays).
    pub(crate) fn consent<'a>(
        &self,
        member: &str,
        scopes: impl IntoIterator<Item = &'a str>,
        flow: Flow,
        now: i64,
    ) {
        let mut consent = self.consents.get(member).map_or_else(
            || Consent {
                scopes: BTreeSet::new(),
                flows: BTreeSet::new(),
                authorized_at: now,
            },
            |c| (*c).clone(),
        );
        consent.scopes.extend(scopes.into_iter().map(str::to_owned));
        consent.flows.insert(flow);
        self.consents.insert(member.to_owned(), Arc::new(consent));
    }

    /// `member`'s consent, when they gave one (and did not remove the app since).
    pub(crate) fn consent_of(&self, member: &str) -> Option<Consent> {
        self.consents.get(member).map(|c| (*c).clone())
    }

    /// Whether `member` already allowed every one of `scopes`.
    pub(crate) fn consented<'a>(
        &self,
        member: &str,
        mut scopes: impl Iterator<Item = &'a str>,
    ) -> bool {
        self.consents
            .get(member)
            .is_some_and(|consent| scopes.all(|scope| consent.scopes.contains(scope)))
    }

    /// `member` removes the app: every credential issued to them so far is revoked (access
    /// and refresh tokens, OAuth 1.0a credentials, unused codes and JSAPI tokens), and their
    /// consent is forgotten. Answers whether there was a consent to remove.
    pub(crate) fn remove(&self, member: &str) -> bool {
        let through = self.next_serial();
        self.revoked_through.insert(member.to_owned(), through);
        let had = self.consents.contains_key(member);
        self.consents.invalidate(member);
        had
    }

    /// Counts one API call of `member` at `now`: `Err(seconds to midnight UTC)` when the
    /// call is over the day's quota.
    pub(crate) fn spend(&self, member: &str, now: i64) -> Result<(), u64> {
        let Some(quota) = self.rules.daily_quota else {
            return Ok(());
        };
        let day = now.div_euclid(SECONDS_PER_DAY);
        let counter = self
            .calls
            .get_with((member.to_owned(), day), || Arc::new(AtomicU64::new(0)));
        let calls = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if calls <= quota {
            Ok(())
        } else {
            Err(seconds_to_midnight(now))
        }
    }

    /// What a picture URL's `t` signs: the asset and `e`, length-prefixed.
    fn picture_message(asset: &str, expires: i64) -> String {
        format!("{}:{asset}{expires}", asset.len())
    }

    /// The signature `t` of a picture URL for `asset` expiring at `e`.
    fn picture_signature(&self, asset: &str, expires: i64) -> String {
        let message = Self::picture_message(asset, expires);
        BASE64URL.encode(ring::hmac::sign(&self.picture_key, message.as_bytes()).as_ref())
    }

    /// The path and query of `member`'s picture, signed, expiring at `expires` (LinkedIn's
    /// shape: `…/profile-displayphoto-shrink_100_100/0?e=<expiry>&v=beta&t=<signature>`).
    pub(crate) fn picture_path(&self, member: &str, expires: i64) -> String {
        format!(
            "/media/dms/image/{member}/profile-displayphoto-shrink_100_100/0?e={expires}&v=beta&t={}",
            self.picture_signature(member, expires)
        )
    }

    /// Checks a picture URL's `e` and `t` for `asset` at `now`.
    pub(crate) fn check_picture(
        &self,
        asset: &str,
        expires: i64,
        signature: &str,
        now: i64,
    ) -> PictureCheck {
        let message = Self::picture_message(asset, expires);
        let same = BASE64URL.decode(signature).is_ok_and(|tag| {
            ring::hmac::verify(&self.picture_key, message.as_bytes(), &tag).is_ok()
        });
        if !same {
            PictureCheck::Forged
        } else if now >= expires {
            PictureCheck::Expired
        } else {
            PictureCheck::Valid
        }
    }
}

/// Seconds from `now` to the next midnight UTC (at least 1).
pub(crate) fn seconds_to_midnight(now: i64) -> u64 {
    let left = SECONDS_PER_DAY - now.rem_euclid(SECONDS_PER_DAY);
    u64::try_from(left).unwrap_or(1).max(1)
}

fn random_token() -> String {
    super::random_token()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn rules(token: u64, refresh: Option<u64>, quota: Option<u64>) -> TokenRules {
        TokenRules {
            token_ttl: Duration::from_secs(token),
            refresh_ttl: refresh.map(Duration::from_secs),
            daily_quota: quota,
        }
    }

    #[test]
    fn an_access_token_is_active_for_its_lifetime_then_expired() {
        let ledger = Ledger::new(rules(60, None, None));
        let (token, issued) = ledger.issue_bearer("ada", "openid,profile", None, NOW);
        assert_eq!(issued.expires_at, NOW + 60);
        let found = ledger.bearer(&token).unwrap();
        assert_eq!(ledger.status(&found, NOW), Status::Active);
        assert_eq!(ledger.status(&found, NOW + 59), Status::Active);
        assert_eq!(ledger.status(&found, NOW + 60), Status::Expired);
        assert!(ledger.bearer("made-up").is_none());
    }

    #[test]
    fn a_refresh_tokens_end_is_fixed_and_no_access_token_outlives_it() {
        // learn.microsoft.com, "Programmatic Refresh Tokens": day 360 of 365, both expire in 5.
        let day = 86_400;
        let ledger = Ledger::new(rules(60 * day as u64, Some(365 * day as u64), None));
        let (_, refresh) = ledger.issue_refresh("ada", "openid", NOW).unwrap();
        assert_eq!(refresh.expires_at, NOW + 365 * day);
        let later = NOW + 360 * day;
        let (_, access) = ledger.issue_bearer("ada", "openid", Some(refresh.expires_at), later);
        assert_eq!(access.expires_at, NOW + 365 * day);
        assert_eq!(access.expires_at - later, 5 * day);
        let early = NOW + 59 * day;
        let (_, access) = ledger.issue_bearer("ada", "openid", Some(refresh.expires_at), early);
        assert_eq!(access.expires_at, early + 60 * day);
        // Without refresh tokens, none is issued.
        let plain = Ledger::new(rules(60, None, None));
        assert!(plain.issue_refresh("ada", "openid", NOW).is_none());
    }

    #[test]
    fn removing_the_app_revokes_what_was_issued_before_and_forgets_the_consent_only() {
        let ledger = Ledger::new(rules(600, Some(6_000), None));
        ledger.consent("ada", ["openid", "profile"], Flow::Oidc, NOW);
        ledger.consent("ada", ["email"], Flow::Jsapi, NOW + 5);
        let consent = ledger.consent_of("ada").unwrap();
        assert_eq!(consent.authorized_at, NOW, "the first consent's time stays");
        assert_eq!(consent.flows.len(), 2);
        assert!(ledger.consented("ada", ["openid", "email"].into_iter()));
        assert!(!ledger.consented("ada", ["w_member_social"].into_iter()));
        assert!(!ledger.consented("grace", ["openid"].into_iter()));

        let (_, access) = ledger.issue_bearer("ada", "openid", None, NOW);
        assert_eq!(access.authorized_at, NOW);
        let (_, refresh) = ledger.issue_refresh("ada", "openid", NOW).unwrap();
        let code = ledger.stamp();
        let (_, grace) = ledger.issue_bearer("grace", "openid", None, NOW);

        assert!(ledger.remove("ada"));
        assert_eq!(ledger.status(&access, NOW + 1), Status::Revoked);
        assert_eq!(ledger.status(&refresh, NOW + 1), Status::Revoked);
        assert_eq!(ledger.status(&access, NOW + 10_000), Status::Revoked);
        assert!(ledger.revoked("ada", code));
        assert_eq!(ledger.status(&grace, NOW + 1), Status::Active);
        assert!(ledger.consent_of("ada").is_none());
        assert!(!ledger.remove("ada"), "nothing left to remove");

        // A new consent and new credentials work again.
        ledger.consent("ada", ["openid"], Flow::Oidc, NOW + 20);
        let (_, again) = ledger.issue_bearer("ada", "openid", None, NOW + 20);
        assert_eq!(ledger.status(&again, NOW + 21), Status::Active);
        assert_eq!(again.authorized_at, NOW + 20);
        assert!(!ledger.revoked("ada", ledger.stamp()));
    }

    #[test]
    fn the_quota_counts_per_member_per_utc_day_and_resets_at_midnight() {
        let ledger = Ledger::new(rules(600, None, Some(2)));
        let noon = NOW + 12 * 3_600;
        assert_eq!(ledger.spend("ada", noon), Ok(()));
        assert_eq!(ledger.spend("ada", noon + 1), Ok(()));
        assert_eq!(ledger.spend("ada", noon + 2), Err(12 * 3_600 - 2));
        assert_eq!(ledger.spend("grace", noon), Ok(()), "another member's own");
        assert_eq!(
            ledger.spend("ada", NOW + SECONDS_PER_DAY),
            Ok(()),
            "a new day"
        );
        let unlimited = Ledger::new(rules(600, None, None));
        for i in 0..100 {
            assert_eq!(unlimited.spend("ada", noon + i), Ok(()));
        }
    }

    #[test]
    fn seconds_to_midnight_are_counted_in_utc() {
        assert_eq!(seconds_to_midnight(NOW), 86_400);
        assert_eq!(seconds_to_midnight(NOW + 86_399), 1);
        assert_eq!(seconds_to_midnight(NOW - 1), 1);
        assert_eq!(seconds_to_midnight(NOW + 3_600), 82_800);
    }

    #[test]
    fn picture_urls_are_signed_with_their_expiry() {
        let ledger = Ledger::new(TokenRules::default());
        let path = ledger.picture_path("SandboxAda", NOW + 100);
        assert!(
            path.starts_with(
                "/media/dms/image/SandboxAda/profile-displayphoto-shrink_100_100/0?e="
            ),
            "{path}"
        );
        let url = url::Url::parse(&format!("https://x{path}")).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["e"], (NOW + 100).to_string());
        assert_eq!(q["v"], "beta");
        let t = &q["t"];
        assert_eq!(
            ledger.check_picture("SandboxAda", NOW + 100, t, NOW),
            PictureCheck::Valid
        );
        assert_eq!(
            ledger.check_picture("SandboxAda", NOW + 100, t, NOW + 100),
            PictureCheck::Expired
        );
        // A later `e`, another member, or another sandbox's signature: forged.
        assert_eq!(
            ledger.check_picture("SandboxAda", NOW + 10_000, t, NOW),
            PictureCheck::Forged
        );
        assert_eq!(
            ledger.check_picture("SandboxGrace", NOW + 100, t, NOW),
            PictureCheck::Forged
        );
        let other = Ledger::new(TokenRules::default());
        assert_eq!(
            other.check_picture("SandboxAda", NOW + 100, t, NOW),
            PictureCheck::Forged
        );
    }

    #[test]
    fn lifetimes_are_bounded() {
        let bounded = rules(0, Some(u64::MAX / 2), None).bounded();
        assert_eq!(bounded.token_ttl, Duration::from_secs(1));
        assert_eq!(bounded.refresh_ttl, Some(MAX_TTL));
        // A ledger on the longest lifetimes builds (moka refuses a time to live over 1000 years).
        let _ = Ledger::new(rules(u64::MAX / 2, Some(u64::MAX / 2), None));
    }
}
