//! Certificate reload: on SIGHUP, and when `TLS_CERT` or `TLS_KEY` change on disk (checked
//! every [`POLL_INTERVAL`]), the pair is read again and, if it is usable, swapped in for new
//! handshakes; connections already open keep theirs. A bad pair keeps the old one, with an
//! error line saying why.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;

use crate::tls::{Alpn, TlsMaterial};

/// How often the files are checked for a change.
pub(super) const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// The files of the pair.
#[derive(Clone, Debug)]
pub(super) struct CertFiles {
    /// `TLS_CERT`.
    pub cert: PathBuf,
    /// `TLS_KEY`.
    pub key: PathBuf,
    /// What the reloaded configuration offers.
    pub alpn: Alpn,
}

impl CertFiles {
    fn modified(&self) -> Option<(SystemTime, SystemTime)> {
        let time = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((time(&self.cert)?, time(&self.key)?))
    }

    /// Reads the pair and swaps it into `tls` when usable.
    pub(super) fn reload(&self, tls: &RustlsConfig, why: &str) -> bool {
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let material = match (read(&self.cert), read(&self.key)) {
            (Ok(cert_pem), Ok(key_pem)) => TlsMaterial {
                cert_pem,
                key_pem,
                generated: false,
            },
            (Err(err), _) | (_, Err(err)) => {
                tracing::error!("certificate not reloaded ({why}), the old one stays: {err}");
                return false;
            }
        };
        match material.server_config(self.alpn) {
            Ok(config) => {
                tls.reload_from_config(config);
                tracing::info!(cert = %self.cert.display(), "certificate reloaded ({why})");
                true
            }
            Err(err) => {
                tracing::error!("certificate not reloaded ({why}), the old one stays: {err}");
                false
            }
        }
    }
}

/// Reloads on SIGHUP and on a change of the files, until the task is dropped.
pub(super) async fn watch(files: CertFiles, tls: RustlsConfig) {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = files.modified();
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.tick().await;
    loop {
        let signalled = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = signalled => {
                seen = files.modified();
                files.reload(&tls, "SIGHUP");
            }
            _ = ticks.tick() => {
                let now = files.modified();
                if now.is_some() && now != seen {
                    seen = now;
                    files.reload(&tls, "the files changed");
                }
            }
        }
    }
}
