//! HTTPS for the API: the certificate and key from `--tls-cert`/`--tls-key`
//! (PEM), served with rustls (the `ring` provider, TLS 1.2 and 1.3).
//!
//! [`load`] reads both files at start-up, while the agent may still read
//! files only root can; [`TlsListener`] then plugs TLS into `axum::serve`
//! (so graceful shutdown and connect info work as for plain TCP).
//! Handshakes run on their own tasks, at most [`MAX_HANDSHAKES`] at a time
//! and each for at most [`HANDSHAKE_TIMEOUT`], so a client that connects and
//! says nothing holds up no one else.

use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
    server::TlsStream,
};
use tracing::{debug, warn};

use super::auth::Options;

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's
/// accept queue.
pub const MAX_HANDSHAKES: usize = 128;
/// How long to pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Why the TLS configuration cannot be used. Messages name the option and
/// the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file named by `--tls-cert` or `--tls-key` cannot be read.
    #[error("cannot read {option} file {}", path.display())]
    Read {
        /// `--tls-cert` or `--tls-key`.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// The file is not PEM, or holds nothing of the kind expected.
    #[error("{option} file {} {reason}", path.display())]
    NotPem {
        /// `--tls-cert` or `--tls-key`.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, e.g. "holds no PEM certificate".
        reason: String,
    },

    /// rustls refused the pair (a key that does not match the certificate,
    /// an unsupported key type, ...).
    #[error("cannot use --tls-cert {} with --tls-key {}", cert.display(), key.display())]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// The server configuration when both `--tls-cert` and `--tls-key` are set;
/// `None` (plain HTTP) when neither is. clap makes sure it is both or
/// neither; one alone is treated as neither.
pub fn load(opts: &Options) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let (Some(cert), Some(key)) = (&opts.tls_cert, &opts.tls_key) else {
        return Ok(None);
    };
    let read = |option, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            option,
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read("--tls-cert", cert)?;
    let key_pem = read("--tls-key", key)?;
    server_config(&cert_pem, cert, &key_pem, key).map(|c| Some(Arc::new(c)))
}

/// A rustls server configuration from PEM texts; the paths are for errors.
pub fn server_config(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<ServerConfig, TlsError> {
    let not_pem = |option, path: &Path, reason: String| TlsError::NotPem {
        option,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem("--tls-cert", cert_path, format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(not_pem(
            "--tls-cert",
            cert_path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        let reason = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no PEM private key (-----BEGIN PRIVATE KEY-----)".to_owned()
            }
            other => format!("is not a valid PEM private key: {other}"),
        };
        not_pem("--tls-key", key_path, reason)
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config_err = |source| TlsError::Config {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(config_err)?;
    // axum::serve speaks HTTP/1.1 only (no `http2` feature).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A TCP listener whose connections come out TLS-wrapped, for `axum::serve`.
/// Dropping it (axum does when shutdown starts) stops accepting.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener`, handshaking with `config`. Must be
    /// called inside the tokio runtime.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ends only once this receiver is gone, so this
            // is not reached; never yield a connection if it were.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts TCP connections until `tx`'s receiver is dropped; each one is
/// handshaken on its own task and, if that succeeds, sent to `tx`.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    // Set while accept keeps failing, so the failure is logged once.
    let mut failing = false;
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => accepted.map(|c| (c, slot)),
                },
                Err(_) => return, // the semaphore is never closed
            },
        };
        let ((tcp, remote), slot) = match accepted {
            Ok(conn) => {
                if failing {
                    debug!("Accepting API connections works again.");
                }
                failing = false;
                conn
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "Cannot accept API connections; retrying.");
                }
                failing = true;
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            drop(slot);
            match handshake {
                Ok(Ok(tls)) => {
                    // Fails only when shutting down: the connection is dropped.
                    let _ = tx.send((tls, remote)).await;
                }
                Ok(Err(e)) => debug!(%remote, error = %e, "TLS handshake failed."),
                Err(_) => debug!(%remote, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out."),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cert: &[u8], key: &[u8]) -> Result<ServerConfig, TlsError> {
        server_config(cert, Path::new("/c.pem"), key, Path::new("/k.pem"))
    }

    #[test]
    fn empty_or_foreign_files_are_not_pem_naming_the_option() {
        let err = config(b"", b"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--tls-cert file /c.pem holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        );
        let err = config(b"hello, not a certificate\n", b"").unwrap_err();
        assert!(
            err.to_string().starts_with("--tls-cert file /c.pem"),
            "{err}"
        );
    }

    #[test]
    fn a_certificate_as_the_key_is_refused_naming_the_key() {
        // Well-formed PEM framing with garbage inside passes the PEM parser
        // (DER is checked later); a certificate block is not a key at all.
        let cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = config(cert, cert).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--tls-key file /k.pem holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
        );
    }

    #[test]
    fn a_garbage_key_is_refused_by_rustls_naming_both_files() {
        let cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = config(cert, key).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot use --tls-cert /c.pem with --tls-key /k.pem"
        );
    }

    #[test]
    fn neither_option_means_plain_http() {
        assert!(load(&Options::default()).unwrap().is_none());
    }

    #[test]
    fn unreadable_cert_names_the_option_and_the_file() {
        let opts = Options {
            tls_cert: Some("/nonexistent/cert.pem".into()),
            tls_key: Some("/nonexistent/key.pem".into()),
            ..Options::default()
        };
        let err = load(&opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read --tls-cert file /nonexistent/cert.pem"
        );
    }
}
