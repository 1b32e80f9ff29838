//! Why the agent could not start (or stopped), with its exit code.

use std::{io, net::SocketAddr};

use crate::{
    api,
    ebpf::{AttachError, LoadError},
    ifaces, keys, store,
};

/// Why the agent could not start (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable API key.
    #[error(transparent)]
    Key(#[from] keys::AuthError),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] api::tls::TlsError),
    /// The history file is of a newer schema or not netmon's.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Loading the eBPF object failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Attaching to a requested interface failed.
    #[error(transparent)]
    Attach(#[from] Box<AttachError>),
    /// The interface list could not be read.
    #[error("cannot list network interfaces in {}", ifaces::SYS_CLASS_NET)]
    Interfaces(#[source] io::Error),
    /// No interface matched the default selection.
    #[error(
        "no interface to watch: none is up, non-loopback and with a MAC address; name one with --iface"
    )]
    NoInterfaces,
    /// The API could not listen.
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The API server failed.
    #[error("the HTTP server failed")]
    Serve(#[source] io::Error),
    /// The webhook secret cannot be read.
    #[error(transparent)]
    Alerts(#[from] crate::alerts::run::SecretError),
    /// A push or remote-write queue's directory could not be made or read.
    #[error(transparent)]
    Queue(#[from] crate::outbound::QueueError),
}

impl Error {
    /// The process exit code for this error (documented in the README).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Key(_) | Error::Tls(_) | Error::Alerts(_) => 2,
            Error::Load(LoadError::MissingCapability(_)) => 3,
            Error::Load(LoadError::NoBtf) => 4,
            Error::Load(_) => 7,
            Error::NoInterfaces => 5,
            Error::Attach(e) if matches!(**e, AttachError::UnknownInterface(_)) => 5,
            Error::Attach(_) => 6,
            Error::Listen { .. } => 8,
            Error::Store(_) => 9,
            Error::Interfaces(_) | Error::Serve(_) | Error::Queue(_) => 1,
        }
    }
}
