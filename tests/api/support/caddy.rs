//! Debian's caddy, run by a test with the repository's `deploy/Caddyfile`: in a temporary
//! directory (its home, data and config), on random ports, with a fresh certificate for
//! `localhost`; killed when dropped. The test changes only the host name, the ports and the
//! certificate paths the file names as its examples.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The caddy binary: `CADDY` when set, else Debian's `/usr/bin/caddy`, else `caddy` on the
/// `PATH`; `Err` says why there is none.
pub fn caddy_binary() -> Result<PathBuf, String> {
    super::installed("CADDY", "/usr/bin/caddy", "caddy")
}

/// A running caddy.
pub struct Caddy {
    child: Child,
    dir: TempDir,
    /// The HTTPS port on 127.0.0.1.
    pub port: u16,
}

impl Caddy {
    /// Starts `caddy run` with `deploy/Caddyfile`, in front of the service at `service` and
    /// the protected app at `app`, and waits until its HTTPS port accepts connections.
    pub async fn start(binary: &Path, service: SocketAddr, app: SocketAddr) -> Caddy {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let (cert, key) = super::nginx::write_certificate(dir.path());
        let template =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Caddyfile"))
                .unwrap();
        let replacements = [
            (
                "admin localhost:2019",
                format!("admin 127.0.0.1:{}", super::free_port()),
            ),
            (
                "http_port 80\n",
                format!("http_port {}\n", super::free_port()),
            ),
            ("https_port 443\n", format!("https_port {port}\n")),
            ("\nlogin.example.com {", "\nlocalhost {".into()),
            ("127.0.0.1:8080", service.to_string()),
            ("127.0.0.1:9000", app.to_string()),
            ("/etc/ssl/certs/login.example.com.pem", cert),
            ("/etc/ssl/private/login.example.com.key", key),
        ];
        let mut conf = template;
        for (from, to) in &replacements {
            assert!(
                conf.contains(from),
                "deploy/Caddyfile no longer has {from:?}"
            );
            conf = conf.replace(from, to);
        }
        let conf_path = dir.path().join("Caddyfile");
        std::fs::write(&conf_path, conf).unwrap();
        let log = File::create(dir.path().join("caddy.log")).unwrap();
        // Caddy keeps its state under $HOME (or the XDG directories): all in the temporary
        // directory, so that nothing of the machine's own caddy is read or written.
        let child = Command::new(binary)
            .env_clear()
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .current_dir(dir.path())
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&conf_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut caddy = Caddy { child, dir, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = caddy.child.try_wait() {
                panic!("caddy exited ({status}): {}", caddy.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "caddy did not listen: {}",
                caddy.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The repository's file is kept as `caddy fmt` writes it; caddy warns otherwise.
        assert!(
            !caddy.logs().contains("not formatted"),
            "deploy/Caddyfile: run `caddy fmt --overwrite deploy/Caddyfile`: {}",
            caddy.logs()
        );
        caddy
    }

    /// `https://localhost:PORT`.
    pub fn origin(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// The PEM file of the certificate caddy serves.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// What caddy wrote (its log goes to stderr).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
