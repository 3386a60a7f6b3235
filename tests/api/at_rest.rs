//! Sessions at rest: what each store holds is ciphertext, read the way an attacker would
//! (the SQLite file and its write-ahead log, every Redis value, the PostgreSQL rows); keys
//! rotate across restarts without signing anyone out; a record moved into another session's
//! row does not open; the generated key file is private and survives restarts.

use std::sync::Arc;

use base64::Engine;
use linkedin_token_exchange::Secret;
use linkedin_token_exchange::server::config::{Config, StoreUrl};
use reqwest::cookie::Jar;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower_sessions_sqlx_store::sqlx::{self, Row};

use crate::support::servers::{RedisServer, postgres_for_tests, skip_or_fail};
use crate::support::{
    FakeUpstream, FetchJson, GRANT, SECRET_KEY, TestApp, json_of, session_id_in, signed_cookie,
    test_config, trusting_client,
};

/// What the fake upstream issues for its first exchange; neither may be stored in clear.
const TOKEN: &[u8] = b"tok-1-";
const TOKEN_SECRET: &[u8] = b"fake-secret-1";

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// `v1.<key id>.`: how a value sealed by `key` starts. The key id, computed here as
/// docs/operations.md defines it: the first 4 bytes of SHA-256("linkedin-token-exchange session
/// key" ‖ key), in hex.
fn sealed_by(key: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"linkedin-token-exchange session key");
    context.update(&bytes);
    let id: String = context.finish().as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v1.{id}.")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_no_credentials(bytes: &[u8], what: &str) {
    assert!(!contains(bytes, TOKEN), "{what} holds the token in clear");
    assert!(
        !contains(bytes, TOKEN_SECRET),
        "{what} holds the token secret in clear"
    );
}

/// A real-mode app on `store` with `keys`, in `dir`.
async fn app(
    dir: &Arc<TempDir>,
    store: StoreUrl,
    keys: Option<&str>,
    upstream: &FakeUpstream,
) -> TestApp {
    let mut config: Config = test_config(dir);
    config.sessions.store = store;
    config.sessions.keys = keys.map(Secret::new);
    upstream.configure(&mut config);
    TestApp::start(config, dir.clone()).await
}

/// A browser of its own (cookies ignore ports, so it follows the app across restarts).
fn browser(dir: &TempDir) -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    (trusting_client(dir, jar.clone()), jar)
}

async fn connect(app: &TestApp, browser: &(reqwest::Client, Arc<Jar>), member: &str) {
    app.set_jsapi_cookie(
        &browser.1,
        &signed_cookie(&format!("token-{member}"), member, SECRET_KEY),
    );
    let response = app.post_from(&browser.0, "/token-exchange").await;
    let (status, body) = json_of(response).await;
    assert_eq!(
        (status, body["member_id"].as_str()),
        (200, Some(member)),
        "{body}"
    );
}

async fn session_of(app: &TestApp, browser: &(reqwest::Client, Arc<Jar>)) -> Value {
    let response = browser.0.get(app.url("/session")).send().await.unwrap();
    assert_eq!(response.status(), 200, "never a 5xx");
    response.json().await.unwrap()
}

/// The stored rows of a SQLite sessions file: id -> data.
async fn sqlite_rows(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let rows = sqlx::query("select id, data from tower_sessions")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get::<String, _>("id"), row.get::<Vec<u8>, _>("data")))
        .collect();
    pool.close().await;
    rows
}

#[tokio::test]
async fn the_sqlite_file_and_its_log_hold_no_credential_in_clear() {
    let upstream = FakeUpstream::start(GRANT).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("sessions.db");
    let app = app(&dir, StoreUrl::Sqlite(db.clone()), Some(&key(1)), &upstream).await;
    let ada = browser(&dir);
    connect(&app, &ada, "at-rest-member").await;
    assert_eq!(upstream.calls(), 1);
    let profile = ada.0.get(app.url("/me")).send().await.unwrap();
    assert_eq!(
        profile.status(),
        200,
        "the server itself can still use them"
    );

    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("sessions.db")
        {
            assert_no_credentials(&std::fs::read(&path).unwrap(), &path.display().to_string());
            files += 1;
        }
    }
    assert!(files >= 2, "the file and its write-ahead log were read");
    let rows = sqlite_rows(&db).await;
    assert_eq!(rows.len(), 1);
    assert!(
        contains(&rows[0].1, sealed_by(&key(1)).as_bytes()),
        "sealed with the key"
    );
}

#[tokio::test]
async fn every_redis_value_holds_no_credential_in_clear() {
    let redis = match RedisServer::start() {
        Ok(redis) => redis,
        Err(reason) => {
            return skip_or_fail(
                "at_rest::every_redis_value_holds_no_credential_in_clear",
                &reason,
            );
        }
    };
    let upstream = FakeUpstream::start(GRANT).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = app(&dir, redis.url().parse().unwrap(), Some(&key(2)), &upstream).await;
    connect(&app, &browser(&dir), "redis-at-rest").await;

    let cli = |args: &[&str]| {
        let output = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string(), "--raw"])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success());
        output.stdout
    };
    let keys = String::from_utf8(cli(&["KEYS", "*"])).unwrap();
    let mut keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
    keys.sort();
    // The session, and the member index's two keys (ids, flows and times only).
    // (Session ids are random: they may sort before or after the index's keys.)
    assert_eq!(keys.len(), 3, "{keys:?}");
    let index: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| k.starts_with("lte:member:"))
        .collect();
    assert_eq!(
        index,
        [
            "lte:member:{redis-at-rest}:meta",
            "lte:member:{redis-at-rest}:sessions"
        ],
        "{keys:?}"
    );
    for key in keys {
        let kind = String::from_utf8(cli(&["TYPE", key])).unwrap();
        let value = match kind.trim() {
            "string" => cli(&["GET", key]),
            "zset" => cli(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
            "hash" => cli(&["HGETALL", key]),
            other => panic!("{key} is a {other}"),
        };
        assert!(!value.is_empty());
        assert_no_credentials(&value, &format!("Redis key {key}"));
    }
}

#[tokio::test]
async fn the_postgres_rows_hold_no_credential_in_clear() {
    let url = match postgres_for_tests() {
        Ok(url) => url,
        Err(reason) => {
            return skip_or_fail(
                "at_rest::the_postgres_rows_hold_no_credential_in_clear",
                &reason,
            );
        }
    };
    let upstream = FakeUpstream::start(GRANT).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = app(&dir, url.parse().unwrap(), Some(&key(3)), &upstream).await;
    let member = browser(&dir);
    connect(&app, &member, "postgres-at-rest").await;
    let id = session_id_in(&member.1, &app.base).unwrap();

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let rows = sqlx::query("select id, data from tower_sessions.session")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut found = false;
    for row in rows {
        let data: Vec<u8> = row.get("data");
        assert_no_credentials(&data, "a tower_sessions.session row");
        found |= row.get::<String, _>("id") == id;
    }
    assert!(found, "this test's row was read");
}

#[tokio::test]
async fn keys_rotate_across_restarts_without_signing_anyone_out() {
    let upstream = FakeUpstream::start(GRANT).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("sessions.db");
    let store = StoreUrl::Sqlite(db.clone());
    let (k1, k2) = (key(11), key(12));

    // k1 alone: Ada and Bob connect.
    let first = app(&dir, store.clone(), Some(&k1), &upstream).await;
    let (ada, bob, cyd) = (browser(&dir), browser(&dir), browser(&dir));
    connect(&first, &ada, "ada").await;
    connect(&first, &bob, "bob").await;
    first.stop().await;

    // k2 first, k1 still known: Ada is still connected and her profile works; Cyd's new
    // record is sealed with k2, while Bob's (untouched) still is with k1.
    let second = app(&dir, store.clone(), Some(&format!("{k2},{k1}")), &upstream).await;
    assert_eq!(session_of(&second, &ada).await["member_id"], "ada");
    assert_eq!(
        ada.0.get(second.url("/me")).send().await.unwrap().status(),
        200
    );
    connect(&second, &cyd, "cyd").await;
    let rows = sqlite_rows(&db).await;
    let sealed_with = |browser: &(reqwest::Client, Arc<Jar>), key: &str| {
        let id = session_id_in(&browser.1, &second.base).unwrap();
        let (_, data) = rows.iter().find(|(row, _)| *row == id).unwrap();
        contains(data, sealed_by(key).as_bytes())
    };
    assert!(
        sealed_with(&cyd, &k2),
        "a new record is sealed with the first key"
    );
    assert!(
        sealed_with(&ada, &k2),
        "a record read and saved again is sealed anew"
    );
    assert!(sealed_with(&bob, &k1), "an untouched record keeps its key");
    second.stop().await;

    // k2 alone: Bob's record, sealed with k1 only, reads as not connected (a 200).
    let third = app(&dir, store, Some(&k2), &upstream).await;
    assert_eq!(session_of(&third, &bob).await, json!({"connected": false}));
    assert_eq!(
        bob.0.get(third.url("/me")).send().await.unwrap().status(),
        401
    );
    let page = bob.0.get(third.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200, "the page offers sign-in again");
    assert_eq!(session_of(&third, &ada).await["member_id"], "ada");
    assert_eq!(session_of(&third, &cyd).await["member_id"], "cyd");
}

#[tokio::test]
async fn a_record_moved_into_another_sessions_row_does_not_open() {
    let upstream = FakeUpstream::start(GRANT).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = dir.path().join("sessions.db");
    let app = app(&dir, StoreUrl::Sqlite(db.clone()), Some(&key(4)), &upstream).await;
    let (victim, attacker) = (browser(&dir), browser(&dir));
    connect(&app, &victim, "victim").await;
    connect(&app, &attacker, "attacker").await;
    let victim_id = session_id_in(&victim.1, &app.base).unwrap();
    let attacker_id = session_id_in(&attacker.1, &app.base).unwrap();

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let moved = sqlx::query(
        "update tower_sessions set data = (select data from tower_sessions where id = ?) where id = ?",
    )
    .bind(&victim_id)
    .bind(&attacker_id)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(moved.rows_affected(), 1);
    pool.close().await;

    assert_eq!(
        session_of(&app, &attacker).await,
        json!({"connected": false})
    );
    assert_eq!(session_of(&app, &victim).await["member_id"], "victim");
}

#[tokio::test]
async fn the_generated_key_file_is_private_and_a_restart_keeps_sessions() {
    use std::os::unix::fs::PermissionsExt;
    let upstream = FakeUpstream::start(GRANT).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let store = StoreUrl::Sqlite(dir.path().join("sessions.db"));
    let key_file = dir.path().join("session.key");
    assert!(!key_file.exists());

    let first = app(&dir, store.clone(), None, &upstream).await;
    let member = browser(&dir);
    connect(&first, &member, "kept-member").await;
    first.stop().await;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = std::fs::read_to_string(&key_file).unwrap();

    let second = app(&dir, store, None, &upstream).await;
    let session: Value = member.0.get(second.url("/session")).fetch_json().await;
    assert_eq!(session["member_id"], "kept-member", "{session}");
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        key,
        "the same key"
    );
}
