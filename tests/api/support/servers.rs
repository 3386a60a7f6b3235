//! Real servers the tests own, to break on purpose: a Redis and a PostgreSQL cluster, each on a
//! random free port in a temporary directory, that a test can kill and bring back on the same
//! port; and a small tmpfs the test can fill to the last byte.
//!
//! Nothing here touches the machine's own Redis (6379) or PostgreSQL (5432): every server is
//! started here, listens on 127.0.0.1 on a port picked here, keeps its files in its own temporary
//! directory, and is stopped when its value is dropped.
//!
//! `start`/`mount` return `Err(reason)` when the environment cannot provide the thing (binary not
//! installed, not root, …): pass the reason to [`skip_or_fail`]. Once something is running, a
//! failure to kill or restart it is a failed test and panics, with the server's log in the message.
//!
//! Everything here is synchronous and blocks the calling thread briefly (a Redis start takes
//! tens of milliseconds, a PostgreSQL `initdb` about two seconds).

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to answer after being started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a restart on the same port keeps retrying while the port is still taken.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a killed server's port may stay open.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Poll interval of every wait loop here.
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------------
// Skipping, and the machine's shared servers
// ---------------------------------------------------------------------------------------------

/// Reports that `test` cannot run because of `reason`.
///
/// With `LTE_REQUIRE_ALL_TESTS=1` (CI) this panics, so a missing server fails the run instead of
/// silently passing; otherwise it prints `SKIPPED <test>: <reason>` to stderr and returns, and the
/// caller returns from the test.
pub fn skip_or_fail(test: &str, reason: &str) {
    if std::env::var("LTE_REQUIRE_ALL_TESTS").as_deref() == Ok("1") {
        panic!("test {test} could not run: {reason} (LTE_REQUIRE_ALL_TESTS=1 forbids skipping)");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!`, and a skip
    // must be seen in a plain `cargo test` run.
    let _ = writeln!(io::stderr(), "SKIPPED {test}: {reason}");
}

/// The shared Redis of the test machine: `TEST_REDIS_URL`, by default
/// `redis://127.0.0.1:6379/1`, when its host:port accepts a TCP connection within 1 s;
/// otherwise why not, naming the URL tried.
pub fn redis_url_for_tests() -> Result<String, String> {
    url_for_tests(
        "Redis",
        "TEST_REDIS_URL",
        std::env::var("TEST_REDIS_URL").ok(),
        "redis://127.0.0.1:6379/1",
        6379,
    )
}

/// The shared PostgreSQL of the test machine: `TEST_POSTGRES_URL`, by default
/// `postgres://postgres@127.0.0.1:5432/test`, when its host:port accepts a TCP connection
/// within 1 s; otherwise why not, naming the URL tried. Tests take it from
/// [`postgres_for_tests`], which also migrates it first.
fn postgres_url_for_tests() -> Result<String, String> {
    url_for_tests(
        "PostgreSQL",
        "TEST_POSTGRES_URL",
        std::env::var("TEST_POSTGRES_URL").ok(),
        "postgres://postgres@127.0.0.1:5432/test",
        5432,
    )
}

/// The shared PostgreSQL for a test that starts a server or a store on it: the URL of
/// [`postgres_url_for_tests`], once that database holds the service's tables. This is the one
/// way the tests get that URL.
///
/// Why: each server's start migrates its store: tower-sessions' `create schema if not exists`
/// and `create table if not exists`, then the member index (under an advisory lock of its
/// own). PostgreSQL checks "if not exists" before inserting into its catalog, without a lock,
/// so two starts on a database that has no tables yet both insert, and the second fails with
/// `duplicate key value violates unique constraint "pg_class_relname_nsp_index"` (or
/// `pg_type_typname_nsp_index`, the table's row type); or tower-sessions, losing the race for
/// the schema, skips its table, and the member index finds no `tower_sessions.session` for its
/// trigger. The tests start many servers at once: on a fresh database, 4 runs of 5 of the
/// PostgreSQL tests (`--test-threads 8`) had one or two fail with `server starts`. One lock per
/// test module did not help: the modules raced each other (and `at_rest` had none). The same
/// race stopped a fleet's instances starting together on a new database: the service now
/// migrates under an advisory lock itself (`session::connect`, tested by
/// `stores::instances_starting_at_once_on_a_fresh_postgresql_database_all_start`), and this
/// helper keeps the tests' one migration up front, so that a database that cannot be migrated
/// fails one clear panic rather than every test.
///
/// How: the first call in the process builds one server on the database (the real migrations,
/// by the same `Server::build` as every test) while holding a PostgreSQL advisory lock, so that
/// test processes sharing the database take turns too; other calls wait for it. Once the
/// tables exist, "if not exists" finds them and starts no longer race: the servers then start
/// in parallel. A database that answers but cannot be migrated fails the test (a panic).
pub fn postgres_for_tests() -> Result<String, String> {
    static MIGRATED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let url = postgres_url_for_tests()?;
    MIGRATED.get_or_init(|| migrate_postgres(&url).unwrap_or_else(|e| panic!("{e}")));
    Ok(url)
}

/// A new, empty database on the shared PostgreSQL, dropped (with its connections) when the
/// guard is: for a test of what happens on a database no service has migrated yet.
pub struct FreshPostgres {
    admin: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl FreshPostgres {
    /// Creates it, or says why not (no PostgreSQL).
    pub fn create() -> Result<FreshPostgres, String> {
        let admin = postgres_url_for_tests()?;
        let name = format!("lte_fresh_{}", std::process::id() ^ rand_u32());
        psql(&admin, &format!("create database {name}"))?;
        let mut url = url::Url::parse(&admin).map_err(|e| e.to_string())?;
        url.set_path(&name);
        Ok(FreshPostgres {
            admin,
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for FreshPostgres {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin,
            &format!("drop database if exists {} with (force)", self.name),
        );
    }
}

/// Runs one statement on the database at `url` (its own runtime and thread).
fn psql(url: &str, statement: &str) -> Result<(), String> {
    use tower_sessions_sqlx_store::sqlx::{self, Connection, PgConnection};
    let (url, statement) = (url.to_owned(), statement.to_owned());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(async move {
                let mut conn = PgConnection::connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::raw_sql(&statement)
                    .execute(&mut conn)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
    })
    .join()
    .unwrap_or_else(|_| Err("psql panicked".to_owned()))
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .elapsed()
            .map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish() as u32
}

/// The advisory lock (any number; PostgreSQL's are per database) taken while the tests migrate.
const MIGRATION_LOCK: i64 = 0x4c54_455f_7465_7374;

/// Migrates the database at `url` by building a server on it, under [`MIGRATION_LOCK`].
///
/// On a thread of its own with its own runtime, so that it can be called from a test's runtime.
fn migrate_postgres(url: &str) -> Result<(), String> {
    use tower_sessions_sqlx_store::sqlx::{self, Connection, PgConnection};
    let shown = linkedin_token_exchange::server::config::redact_urls(url);
    let url = url.to_owned();
    let migrate = async move {
        let mut lock = PgConnection::connect(&url)
            .await
            .map_err(|e| format!("cannot connect to {shown} to migrate it: {e}"))?;
        sqlx::query("select pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut lock)
            .await
            .map_err(|e| format!("cannot take the migration lock on {shown}: {e}"))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut config = crate::support::test_config(&dir);
        config.sessions.store = url
            .parse()
            .map_err(|e| format!("{shown} is not a store URL: {e}"))?;
        let built = linkedin_token_exchange::server::Server::build(&config).await;
        // Closing the connection releases the lock.
        let _ = lock.close().await;
        built
            .map(drop)
            .map_err(|e| format!("a server on {shown} does not start: {e}"))
    };
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(migrate)
    })
    .join()
    .unwrap_or_else(|_| Err("the migration panicked".to_owned()))
}

/// `given` (the value of `var`), or `default` when unset or empty, when it answers.
fn url_for_tests(
    what: &str,
    var: &str,
    given: Option<String>,
    default: &str,
    default_port: u16,
) -> Result<String, String> {
    let (url, from) = match given.filter(|v| !v.is_empty()) {
        Some(url) => (url, var.to_owned()),
        None => (
            default.to_owned(),
            format!("the default; set {var} to change it"),
        ),
    };
    if reachable(&url, default_port, Duration::from_secs(1)) {
        Ok(url)
    } else {
        Err(format!(
            "no {what} answers at {} ({from})",
            linkedin_token_exchange::server::config::redact_urls(&url)
        ))
    }
}

/// Whether the host:port of `url` (port `default_port` when it has none) accepts a TCP
/// connection within `timeout`.
fn reachable(url: &str, default_port: u16, timeout: Duration) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let port = parsed.port().unwrap_or(default_port);
    let addrs: Vec<SocketAddr> = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => vec![(ip, port).into()],
        Some(url::Host::Ipv6(ip)) => vec![(ip, port).into()],
        Some(url::Host::Domain(name)) => match (name, port).to_socket_addrs() {
            Ok(addrs) => addrs.collect(),
            Err(_) => return false,
        },
        None => return false,
    };
    let deadline = Instant::now() + timeout;
    addrs.iter().any(|addr| {
        let left = deadline.saturating_duration_since(Instant::now());
        !left.is_zero() && TcpStream::connect_timeout(addr, left).is_ok()
    })
}

// ---------------------------------------------------------------------------------------------
// Ports, processes, files
// ---------------------------------------------------------------------------------------------

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, read, released).
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("cannot bind 127.0.0.1:0 to find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot read the free port: {e}"))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// Waits until nothing accepts connections on `port`; false if it is still open after `timeout`.
fn wait_port_closed(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while port_open(port) {
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL);
    }
    true
}

/// Whether a Redis on 127.0.0.1:`port` answers `PING` with `+PONG`.
fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err()
        || stream.set_write_timeout(timeout).is_err()
        || stream.write_all(b"PING\r\n").is_err()
    {
        return false;
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 64];
    while !reply.ends_with(b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
    }
    reply.starts_with(b"+PONG")
}

/// `name` on `PATH`, else in one of `extra_dirs`.
fn find_program(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The current length of `path` (0 when it does not exist): where the next log lines start.
fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The last lines of `path` from byte `from` on, for error messages.
fn log_tail(path: &Path, from: u64) -> String {
    let Ok(bytes) = fs::read(path) else {
        return format!("(no log at {})", path.display());
    };
    let start = usize::try_from(from).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(15)..];
    format!("log {}:\n{}", path.display(), tail.join("\n"))
}

/// Runs `command`, `Err` with its stderr and stdout unless it succeeds.
fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

/// A `redis-server` child process of this test on a random port of 127.0.0.1, without
/// persistence, in its own temporary directory. Dropping it kills it.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers `PING`.
    /// `Err(reason)` when `redis-server` is not installed or does not come up.
    pub fn start() -> Result<RedisServer, String> {
        let binary = find_program("redis-server", &["/usr/bin", "/usr/local/bin"]).ok_or(
            "redis-server is not installed (not on PATH, nor in /usr/bin, /usr/local/bin)",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("lte-redis-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory for Redis: {e}"))?;
        let mut server = RedisServer {
            binary,
            port: free_port()?,
            dir,
            child: None,
        };
        // Another process may take the free port before Redis binds it: try a few ports.
        let mut last_error = String::new();
        for _ in 0..3 {
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = e,
            }
            server.port = free_port()?;
        }
        Err(format!("redis-server did not start: {last_error}"))
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on (the same across [`RedisServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server process is running (it may have been killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server with SIGKILL, reaps it and checks its port is closed. Its data is gone
    /// (no persistence). When it is not running, only checks the port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child
                .kill()
                .unwrap_or_else(|e| panic!("cannot kill redis-server on port {}: {e}", self.port));
            child
                .wait()
                .unwrap_or_else(|e| panic!("cannot reap redis-server on port {}: {e}", self.port));
        }
        assert!(
            wait_port_closed(self.port, CLOSE_TIMEOUT),
            "port {} still accepts connections after redis-server was killed",
            self.port
        );
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, as with a
    /// hung server; [`RedisServer::resume`] thaws it with its data intact.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("the server is running");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Starts the server again, empty, on the same port (killing it first if it runs), and waits
    /// until it answers `PING`. Retries for a while when the port is still taken.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            let log_start = file_len(&self.log_path());
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) => {
                    let log = log_tail(&self.log_path(), log_start);
                    let port_taken = log.contains("Address already in use");
                    if !port_taken || Instant::now() >= deadline {
                        panic!("redis-server did not restart on port {}: {e}", self.port);
                    }
                    sleep(Duration::from_millis(200));
                }
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Spawns `redis-server` on `self.port` and waits for `PONG`; `Err` (with the log) when it
    /// exits or does not answer in time.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let log_start = file_len(&log_path);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot clone the log handle: {e}"))?;
        let port = self.port.to_string();
        let mut child = Command::new(&self.binary)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "redis-server on port {port} exited ({status}); {}",
                    log_tail(&log_path, log_start)
                ));
            }
            if redis_ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server on port {port} did not answer PING within {START_TIMEOUT:?}; {}",
                    log_tail(&log_path, log_start)
                ));
            }
            sleep(POLL);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A PostgreSQL cluster of this test: `initdb` in a temporary directory, superuser `postgres`
/// with trust authentication, listening on 127.0.0.1 on a random port (and a Unix socket in its
/// directory), `fsync=off`. Dropping it stops it (`-m immediate`) and removes the directory.
///
/// PostgreSQL refuses to run as root: as root, `initdb` and `pg_ctl` run as the `postgres` user
/// (through `runuser`, or `su`), which owns the directory.
#[derive(Debug)]
pub struct PostgresCluster {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    /// `runuser`/`su` when running as root.
    switch_user: Option<SwitchUser>,
    port: u16,
    dir: TempDir,
    running: bool,
}

#[derive(Debug, Clone)]
enum SwitchUser {
    Runuser(PathBuf),
    Su(PathBuf),
}

impl PostgresCluster {
    /// Creates and starts a cluster on a free port; waits until it accepts connections.
    /// `Err(reason)` when the PostgreSQL binaries (or, as root, the `postgres` user and
    /// `runuser`/`su`) are missing, or the cluster does not come up.
    pub fn start() -> Result<PostgresCluster, String> {
        let (initdb, pg_ctl) = find_postgres_binaries()?;
        let switch_user = if is_root() {
            Some(postgres_user_switch()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("lte-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory for PostgreSQL: {e}"))?;
        if switch_user.is_some() {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {} to postgres: {e}", dir.path().display()))?;
        }
        let mut cluster = PostgresCluster {
            initdb,
            pg_ctl,
            switch_user,
            port: free_port()?,
            dir,
            running: false,
        };
        let data = cluster.data_dir();
        run(cluster
            .command(&cluster.initdb)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .args(["-E", "UTF8", "--locale=C"]))?;
        // Another process may take the free port before the postmaster binds it: try a few.
        let mut last_error = String::new();
        for _ in 0..3 {
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    cluster.running = true;
                    return Ok(cluster);
                }
                Err(e) => last_error = e,
            }
            cluster.port = free_port()?;
        }
        Err(format!("PostgreSQL did not start: {last_error}"))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on (the same across [`PostgresCluster::start_again`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the cluster is running (it may have been stopped).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Stops the cluster the way a crash does (`pg_ctl stop -m immediate`: no checkpoint,
    /// connections cut) and checks its port is closed. When it is stopped, only checks the port.
    pub fn stop_immediate(&mut self) {
        if self.running {
            let data = self.data_dir();
            run(self.command(&self.pg_ctl).arg("-D").arg(&data).args([
                "-m",
                "immediate",
                "-w",
                "stop",
            ]))
            .unwrap_or_else(|e| panic!("cannot stop PostgreSQL on port {}: {e}", self.port));
            self.running = false;
        }
        assert!(
            wait_port_closed(self.port, CLOSE_TIMEOUT),
            "port {} still accepts connections after PostgreSQL was stopped",
            self.port
        );
    }

    /// Starts the cluster again, with its data (after crash recovery), on the same port; waits
    /// until it accepts connections. Retries for a while when the port is still taken. Does
    /// nothing when it is running.
    pub fn start_again(&mut self) {
        if self.running {
            return;
        }
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            let log_start = file_len(&self.log_path());
            match self.pg_ctl_start() {
                Ok(()) => {
                    self.running = true;
                    return;
                }
                Err(e) => {
                    let log = log_tail(&self.log_path(), log_start);
                    let port_taken = log.contains("could not bind");
                    if !port_taken || Instant::now() >= deadline {
                        panic!("PostgreSQL did not start again on port {}: {e}", self.port);
                    }
                    sleep(Duration::from_millis(200));
                }
            }
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `program`, run as the `postgres` user when we are root.
    fn command(&self, program: &Path) -> Command {
        match &self.switch_user {
            None => Command::new(program),
            Some(SwitchUser::Runuser(runuser)) => {
                let mut c = Command::new(runuser);
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            }
            Some(SwitchUser::Su(su)) => {
                // su runs a shell command line: `exec "$0" "$@"` runs the program and the arguments
                // su passes after the user name, untouched by the shell.
                let mut c = Command::new(su);
                c.args([
                    "-s",
                    "/bin/sh",
                    "-c",
                    "exec \"$0\" \"$@\"",
                    "--",
                    "postgres",
                ])
                .arg(program);
                c
            }
        }
    }

    /// `pg_ctl start -w` on `self.port`, server output appended to the log (so that no pipe of
    /// ours stays open in the postmaster).
    fn pg_ctl_start(&self) -> Result<(), String> {
        let log_path = self.log_path();
        let log_start = file_len(&log_path);
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let data = self.data_dir();
        run(self
            .command(&self.pg_ctl)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log_path)
            .arg("-o")
            .arg(&options)
            .args(["-w", "-t", "30", "start"]))
        .map_err(|e| format!("{e}; {}", log_tail(&log_path, log_start)))
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        let data = self.data_dir();
        let stopped = self
            .command(&self.pg_ctl)
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        if !stopped {
            // Do not leave a postmaster behind on a deleted directory.
            if let Some(pid) = fs::read_to_string(data.join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().map(str::to_owned))
            {
                let _ = Command::new("kill")
                    .args(["-KILL", pid.trim()])
                    .stdin(Stdio::null())
                    .output();
            }
        }
    }
}

/// `initdb` and `pg_ctl` from one directory: the newest `/usr/lib/postgresql/*/bin`, else `PATH`.
fn find_postgres_binaries() -> Result<(PathBuf, PathBuf), String> {
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned.sort();
    let mut dirs: Vec<PathBuf> = versioned.into_iter().rev().map(|(_, d)| d).collect();
    if let Some(initdb) = find_program("initdb", &[]) {
        dirs.extend(initdb.parent().map(Path::to_path_buf));
    }
    dirs.into_iter()
        .map(|d| (d.join("initdb"), d.join("pg_ctl")))
        .find(|(initdb, pg_ctl)| initdb.is_file() && pg_ctl.is_file())
        .ok_or_else(|| {
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed \
             (not in /usr/lib/postgresql/*/bin nor on PATH)"
                .to_owned()
        })
}

/// How root runs a command as `postgres`; `Err` when the user or the tools are missing.
fn postgres_user_switch() -> Result<SwitchUser, String> {
    postgres_ids()?;
    let sbin = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];
    if let Some(runuser) = find_program("runuser", &sbin) {
        Ok(SwitchUser::Runuser(runuser))
    } else if let Some(su) = find_program("su", &sbin) {
        Ok(SwitchUser::Su(su))
    } else {
        Err(
            "running as root, but neither runuser nor su is installed to run PostgreSQL \
             as the postgres user"
                .to_owned(),
        )
    }
}

/// The uid and gid of the `postgres` user (`id -u postgres`, `id -g postgres`).
fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let output = Command::new("id")
            .args([OsStr::new(flag), OsStr::new("postgres")])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run id: {e}"))?;
        if !output.status.success() {
            return Err(
                "running as root, but there is no postgres user to run PostgreSQL as".to_owned(),
            );
        }
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("id {flag} postgres: {e}"))
    };
    Ok((id("-u")?, id("-g")?))
}

// ---------------------------------------------------------------------------------------------
// tmpfs
// ---------------------------------------------------------------------------------------------

/// Name of the file [`Tmpfs::fill`] writes.
const FILLER: &str = ".filler";

/// A small tmpfs mounted on a fresh temporary directory, to run out of disk space on demand.
/// Dropping it unmounts it and removes the directory. Needs root.
#[derive(Debug)]
pub struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`: `"4m"`, `"512k"`, …) on a fresh temporary
    /// directory. `Err(reason)` when not root or the mount fails.
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        if !is_root() {
            return Err("mounting a tmpfs needs root".to_owned());
        }
        let dir = tempfile::Builder::new()
            .prefix("lte-tmpfs-")
            .tempdir()
            .map_err(|e| format!("cannot create a mount point: {e}"))?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0777"))
            .arg("tmpfs")
            .arg(dir.path()))?;
        Ok(Tmpfs { dir })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem to the last byte with a filler file (`.filler`) and returns how many
    /// bytes it wrote. Afterwards, writing data to a new file, or appending to the filler, fails
    /// with ENOSPC (`io::ErrorKind::StorageFull`).
    ///
    /// tmpfs allocates whole pages: a file that existed before may still take appends until
    /// its last page is full. Creating empty files and directories still works (inodes are
    /// counted apart).
    pub fn fill(&self) -> u64 {
        let path = self.path().join(FILLER);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        let chunk = vec![0x5au8; 1 << 20];
        let mut written = 0u64;
        // Big writes until the space runs out, then smaller ones to fill the last page.
        for size in [1 << 20, 1 << 16, 1 << 12, 1 << 9, 1 << 6, 1 << 3, 1] {
            loop {
                match file.write(&chunk[..size]) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::StorageFull => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("cannot fill {}: {e}", path.display()),
                }
            }
        }
        written
    }

    /// Removes the filler file and returns once the space [`Tmpfs::fill`] took can be written
    /// again. The kernel may release an unlinked file's pages a moment after `unlink`
    /// returns, so the next small write can still fail with ENOSPC: this waits, up to 2 s,
    /// until a 1-byte probe can be written.
    pub fn free(&self) {
        let path = self.path().join(FILLER);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {}: {e}", path.display()),
        }
        let probe = self.path().join("free-probe");
        let started = Instant::now();
        while fs::write(&probe, b"x").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "the tmpfs has no space 2 s after its filler was removed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = fs::remove_file(&probe);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        if !unmounted {
            // Busy (an open file, a server's working directory): detach it lazily.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .stdin(Stdio::null())
                .output();
        }
        // The TempDir field then removes the (now empty) mount point.
    }
}

// ---------------------------------------------------------------------------------------------
// Tests of the above, against the real things
// ---------------------------------------------------------------------------------------------

/// Whether connecting to 127.0.0.1:`port` is refused (nothing listens).
fn refused(port: u16) -> bool {
    matches!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
    )
}

#[test]
fn servers_redis_killed_refuses_then_restarts_on_the_same_port() {
    let test = "servers_redis_killed_refuses_then_restarts_on_the_same_port";
    let mut redis = match RedisServer::start() {
        Ok(r) => r,
        Err(reason) => return skip_or_fail(test, &reason),
    };
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/0"));
    assert!(redis.is_running());
    assert!(redis_ping(port));

    redis.kill();
    assert!(!redis.is_running());
    assert!(refused(port), "a killed Redis must refuse connections");
    assert!(!redis_ping(port));

    redis.restart();
    assert!(redis.is_running());
    assert_eq!(redis.port(), port);
    assert!(
        redis_ping(port),
        "the restarted Redis answers on the same port"
    );

    drop(redis);
    assert!(refused(port), "a dropped Redis must be gone");
}

#[tokio::test]
async fn servers_postgres_stopped_refuses_then_starts_again_with_its_data() {
    use tower_sessions_sqlx_store::sqlx::{self, Connection, PgConnection};

    let test = "servers_postgres_stopped_refuses_then_starts_again_with_its_data";
    let mut pg = match PostgresCluster::start() {
        Ok(pg) => pg,
        Err(reason) => return skip_or_fail(test, &reason),
    };
    let port = pg.port();
    let dir = pg.dir.path().to_path_buf();
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    );
    let mut conn = PgConnection::connect(&pg.url()).await.unwrap();
    for statement in ["CREATE TABLE kept (v INT)", "INSERT INTO kept VALUES (42)"] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }

    pg.stop_immediate();
    assert!(!pg.is_running());
    assert!(
        refused(port),
        "a stopped PostgreSQL must refuse connections"
    );
    assert!(
        sqlx::query("SELECT 1").execute(&mut conn).await.is_err(),
        "the open connection is cut"
    );
    assert!(PgConnection::connect(&pg.url()).await.is_err());

    pg.start_again();
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    let mut conn = PgConnection::connect(&pg.url()).await.unwrap();
    let (v,): (i32,) = sqlx::query_as("SELECT v FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, 42, "the data survives the crash");
    conn.close().await.unwrap();

    drop(pg);
    assert!(refused(port), "a dropped cluster must be stopped");
    assert!(
        !dir.exists(),
        "a dropped cluster's directory must be removed"
    );
}

#[tokio::test]
async fn servers_shared_postgres_is_migrated_before_any_test_gets_it() {
    use tower_sessions_sqlx_store::sqlx::{self, Connection, PgConnection};

    let url = match postgres_for_tests() {
        Ok(url) => url,
        Err(reason) => {
            return skip_or_fail(
                "servers_shared_postgres_is_migrated_before_any_test_gets_it",
                &reason,
            );
        }
    };
    let mut conn = PgConnection::connect(&url).await.unwrap();
    for table in ["tower_sessions.session", "tower_sessions.member_session"] {
        let (found,): (Option<String>,) = sqlx::query_as("select to_regclass($1)::text")
            .bind(table)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(found.is_some(), "{table} is not there");
    }
    conn.close().await.unwrap();
}

#[test]
fn servers_tmpfs_fills_to_enospc_and_frees() {
    let test = "servers_tmpfs_fills_to_enospc_and_frees";
    let disk = match Tmpfs::mount("4m") {
        Ok(d) => d,
        Err(reason) => return skip_or_fail(test, &reason),
    };
    let path = disk.path().to_path_buf();
    fs::write(path.join("before"), b"fits").unwrap();

    let written = disk.fill();
    assert!(
        written > 3 << 20 && written <= 4 << 20,
        "filled {written} bytes"
    );
    let mut small = File::create(path.join("small")).unwrap();
    let err = small.write_all(b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28), "ENOSPC, got {err}");
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    let mut filler = OpenOptions::new()
        .append(true)
        .open(path.join(FILLER))
        .unwrap();
    assert_eq!(
        filler.write_all(b"x").unwrap_err().kind(),
        io::ErrorKind::StorageFull,
        "the filler holds the last byte"
    );
    drop(filler);

    disk.free();
    small.write_all(b"x").unwrap();
    fs::write(path.join("after"), vec![0u8; 1 << 20]).unwrap();

    drop(disk);
    assert!(
        !path.exists(),
        "a dropped tmpfs's mount point must be removed"
    );
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(path.to_str().unwrap()), "still mounted");
}

#[test]
fn servers_reachability_follows_the_server() {
    let test = "servers_reachability_follows_the_server";
    let mut redis = match RedisServer::start() {
        Ok(r) => r,
        Err(reason) => return skip_or_fail(test, &reason),
    };
    let second = Duration::from_secs(1);
    assert!(reachable(&redis.url(), 6379, second));
    let by_name = format!("redis://localhost:{}/0", redis.port());
    assert!(reachable(&by_name, 6379, second));
    redis.kill();
    assert!(!reachable(&redis.url(), 6379, second));
    assert!(!reachable("not a url", 6379, second));

    // The machine's shared servers: when offered, they answer (only a TCP connect is made).
    let shared = [
        (redis_url_for_tests(), 6379),
        (postgres_url_for_tests(), 5432),
    ];
    for (url, default_port) in shared {
        if let Ok(url) = url {
            assert!(
                reachable(&url, default_port, second),
                "{url} was offered but is down"
            );
        }
    }
}

#[test]
fn a_skip_names_the_url_actually_tried_without_its_password() {
    let tried = url_for_tests(
        "Redis",
        "TEST_REDIS_URL",
        Some("redis://:PW@127.0.0.1:1/3".into()),
        "redis://127.0.0.1:6379/1",
        6379,
    )
    .unwrap_err();
    assert_eq!(
        tried,
        "no Redis answers at redis://:***@127.0.0.1:1/3 (TEST_REDIS_URL)"
    );
    let default = url_for_tests(
        "Redis",
        "TEST_REDIS_URL",
        None,
        "redis://127.0.0.1:1/1",
        6379,
    )
    .unwrap_err();
    assert!(
        default.contains("redis://127.0.0.1:1/1") && default.contains("default"),
        "{default}"
    );
}
