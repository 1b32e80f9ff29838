//! What the API's unit tests share: a state with no readings yet and a real
//! server on a loopback socket.

use std::{net::SocketAddr, sync::Arc};

use axum::Router;

use super::{AppState, StoreSlot, limits::Http};

/// The API's state with no readings yet, the history `store`, `/metrics`
/// behind the key and the limits of `http`.
pub fn state(store: StoreSlot, http: Arc<Http>) -> AppState {
    AppState {
        snapshot: Default::default(),
        telemetry: Default::default(),
        server_id: None,
        metrics: crate::metrics::Settings {
            needs_key: true,
            limits: crate::metrics::Limits {
                max_devices: 10,
                flows: false,
                max_flows: 10,
            },
        },
        store,
        push: None,
        remote_write: None,
        config: Default::default(),
        http,
        alerts: Default::default(),
        prebuilt: Default::default(),
        snapshot_flows: crate::push::DEFAULT_PUSH_FLOWS as usize,
        started: std::time::SystemTime::now(),
    }
}

/// Serves `app` (a whole router, with its outer layers) under `http`'s
/// limits on a loopback socket, on a runtime of its own; the server ends
/// with the returned runtime.
pub fn serve_on_loopback(app: Router, http: Arc<Http>) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        super::server::serve(listener, None, app, http, std::future::pending()).await
    });
    (addr, runtime)
}
