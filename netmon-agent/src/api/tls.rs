//! HTTPS for the API: the certificate and key from `--tls-cert`/`--tls-key`
//! (PEM), served with rustls (the `ring` provider, TLS 1.2 and 1.3).
//!
//! [`load`] reads both files at start-up, while the agent may still read
//! files only root can. [`super::server`] runs each handshake on its
//! connection's own task, inside the connection cap and for at most
//! `--tls-handshake-timeout`, so a client that connects and says nothing
//! holds up no one else.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio_rustls::rustls::{
    self, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use crate::keys::Options;

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
    // The server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
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
