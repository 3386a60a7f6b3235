//! Redis deployments the fleet tests own: a plain server ([`RedisNode`]), a primary with a
//! replica watched by three sentinels ([`SentinelSet`]), and a three-master cluster made by
//! `redis-cli --cluster create` ([`Cluster`]). Every process listens on 127.0.0.1 on ports
//! picked by [`free_port`], keeps its files in its own temporary directory, and is killed by
//! its pid when dropped (never by name: other test runs share the machine).
//!
//! `start` returns `Err(reason)` when `redis-server` or `redis-cli` is missing or a server
//! does not come up: hand the reason to `servers::skip_or_fail`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::free_port;

/// How long a deployment may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// `redis-cli -p PORT ARGS…`, its output trimmed; `Err` when it cannot run or fails.
pub fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run redis-cli (is redis-tools installed?): {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let started = Instant::now();
    while !ready() {
        if started.elapsed() > START_TIMEOUT {
            return Err(format!("{what} within {START_TIMEOUT:?}"));
        }
        sleep(POLL);
    }
    Ok(())
}

/// One `redis-server` (or sentinel) process of this test.
pub struct RedisNode {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl RedisNode {
    /// `redis-server` on a free port, without persistence, with `extra` arguments; waits
    /// for `PING`.
    pub fn start(extra: &[&str]) -> Result<RedisNode, String> {
        let dir = tempfile::Builder::new()
            .prefix("lte-fleet-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = free_port();
        let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--save", "", "--appendonly", "no", "--dir"].map(String::from));
        args.push(dir.path().display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(dir, port, &args)
    }

    /// A sentinel on a free port watching `primary` as `service`, with quorum 2 and a
    /// one-second down-after.
    pub fn sentinel(service: &str, primary: u16) -> Result<RedisNode, String> {
        let dir = tempfile::Builder::new()
            .prefix("lte-sentinel-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {service} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {service} 1000\n\
                 sentinel failover-timeout {service} 3000\n\
                 sentinel parallel-syncs {service} 1\n",
                dir = dir.path().display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let args = [conf.display().to_string(), "--sentinel".to_owned()];
        Self::spawn(dir, port, &args)
    }

    fn spawn(dir: TempDir, port: u16, args: &[String]) -> Result<RedisNode, String> {
        let binary = which("redis-server").ok_or("redis-server is not installed")?;
        let log = std::fs::File::create(dir.path().join("redis.log")).map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let node = RedisNode {
            port,
            child: Some(child),
            dir,
        };
        wait_until(&format!("redis on port {port} answers PING"), || {
            cli(port, &["PING"]).is_ok_and(|r| r == "PONG")
        })
        .map_err(|e| format!("{e}; log: {}", node.log()))?;
        Ok(node)
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// `redis-cli` against this node.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args).unwrap_or_else(|e| panic!("redis-cli -p {}: {e}", self.port))
    }

    /// SIGKILL, by pid, and reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.kill();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain(["/usr/bin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// The service name the sentinels watch.
pub const SERVICE: &str = "lte";

/// A primary, one replica of it, and three sentinels that know both and each other.
pub struct SentinelSet {
    pub primary: RedisNode,
    pub replica: RedisNode,
    pub sentinels: Vec<RedisNode>,
}

impl SentinelSet {
    /// Starts the five processes and waits until replication runs and every sentinel sees
    /// the replica and the two other sentinels (so that a failover can be agreed).
    pub fn start() -> Result<SentinelSet, String> {
        which("redis-cli").ok_or("redis-cli is not installed (Debian: redis-tools)")?;
        let primary = RedisNode::start(&[])?;
        let replica = RedisNode::start(&["--replicaof", "127.0.0.1", &primary.port.to_string()])?;
        wait_until("the replica is in sync", || {
            cli(replica.port, &["INFO", "replication"])
                .is_ok_and(|info| info.contains("master_link_status:up"))
        })?;
        let sentinels = (0..3)
            .map(|_| RedisNode::sentinel(SERVICE, primary.port))
            .collect::<Result<Vec<_>, _>>()?;
        for sentinel in &sentinels {
            wait_until("every sentinel knows the replica and two sentinels", || {
                let replicas = cli(sentinel.port, &["SENTINEL", "REPLICAS", SERVICE]);
                let others = cli(sentinel.port, &["SENTINEL", "SENTINELS", SERVICE]);
                replicas.is_ok_and(|r| r.contains(&replica.port.to_string()))
                    && others.is_ok_and(|o| o.matches("127.0.0.1").count() >= 2)
            })?;
        }
        Ok(SentinelSet {
            primary,
            replica,
            sentinels,
        })
    }

    /// `redis-sentinel://…` naming the three sentinels, database 0.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis-sentinel://{}/{SERVICE}/0", nodes.join(","))
    }
}

/// Three masters, no replicas, made with `redis-cli --cluster create`.
pub struct Cluster {
    pub masters: Vec<RedisNode>,
}

impl Cluster {
    /// Starts three cluster-enabled servers (each with its bus on a free port), joins them,
    /// and waits until every node reports `cluster_state:ok`.
    pub fn start() -> Result<Cluster, String> {
        which("redis-cli").ok_or("redis-cli is not installed (Debian: redis-tools)")?;
        let masters = (0..3)
            .map(|_| {
                let bus = free_port().to_string();
                RedisNode::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nodes: Vec<String> = masters
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(nodes.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        cli(masters[0].port, &args)?;
        for master in &masters {
            wait_until("the cluster is ok on every node", || {
                cli(master.port, &["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            })?;
        }
        Ok(Cluster { masters })
    }

    /// `redis-cluster://…` naming every master.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .masters
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        format!("redis-cluster://{}", nodes.join(","))
    }

    /// The keys each master holds (`SCAN`, this node only), in the order of `masters`.
    pub fn keys_per_master(&self) -> Vec<Vec<String>> {
        self.masters
            .iter()
            .map(|m| {
                m.cli(&["--scan"])
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }
}
