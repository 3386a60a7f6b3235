//! Debian's nginx, run by a test with the repository's `deploy/nginx.conf`: in a temporary
//! prefix, on a random port, with a fresh certificate for `localhost`; stopped by pid when
//! dropped. The test changes only the addresses, ports and file paths the file names as
//! its examples, and the paths a user who is not root can write.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The nginx binary: `NGINX` when set, else Debian's `/usr/sbin/nginx`, else `nginx` on the
/// `PATH`; `Err` says why there is none.
pub fn nginx_binary() -> Result<PathBuf, String> {
    super::installed("NGINX", "/usr/sbin/nginx", "nginx-light")
}

/// A running nginx.
pub struct Nginx {
    child: Child,
    dir: TempDir,
    /// The HTTPS port on 127.0.0.1.
    pub port: u16,
}

impl Nginx {
    /// Starts `nginx` with `deploy/nginx.conf`, in front of the service at `service` and the
    /// protected app at `app`, and waits until its port accepts connections.
    pub async fn start(binary: &Path, service: SocketAddr, app: SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let (cert, key) = write_certificate(dir.path());
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"),
        )
        .unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let replacements = [
            ("listen 443 ssl;", format!("listen 127.0.0.1:{port} ssl;")),
            ("server 127.0.0.1:8080;", format!("server {service};")),
            ("server 127.0.0.1:9000;", format!("server {app};")),
            (
                "server_name login.example.com;",
                "server_name localhost;".into(),
            ),
            ("/etc/ssl/certs/login.example.com.pem", cert),
            ("/etc/ssl/private/login.example.com.key", key),
            ("/var/log/nginx/error.log", path("error.log")),
            ("/var/log/nginx/access.log", path("access.log")),
            ("/run/nginx.pid", path("nginx.pid")),
            ("worker_processes auto;", "worker_processes 1;".into()),
        ];
        let mut conf = template;
        for (from, to) in &replacements {
            assert!(
                conf.contains(from),
                "deploy/nginx.conf no longer has {from:?}"
            );
            conf = conf.replace(from, to);
        }
        // Debian's build keeps its temporary files under /var/lib/nginx, which only root may
        // write; and a master started as root runs its workers as `nobody`, who could not
        // enter the temporary directory.
        let temps = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .map(|t| format!("    {t}_temp_path {};\n", path(t)))
            .concat();
        conf = conf.replacen("http {\n", &format!("http {{\n{temps}"), 1);
        if is_root() {
            conf = format!("user root;\n{conf}");
        }
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut nginx = Nginx { child, dir, port };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "nginx did not listen: {}",
                nginx.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    /// `https://localhost:PORT`.
    pub fn origin(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// The PEM file of the certificate nginx serves.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// What nginx wrote to its error log and stderr.
    pub fn logs(&self) -> String {
        ["error.log", "stderr.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `localhost`, written as `cert.pem` and `key.pem` in `dir`
/// (caddy's too).
pub fn write_certificate(dir: &Path) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
