//! `GET /api/v1/stream`: Server-Sent Events, one `interval` event per drain
//! with that interval's summary, for live dashboards. Each event's data is
//! JSON: the drain's time and length, each watched interface's totals and
//! rates, the device and flow counts, and the five devices that sent the
//! most in the interval. A comment line every 15 s keeps proxies from
//! closing an idle stream.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    response::sse::{Event, KeepAlive, Sse},
    routing::get,
};
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};

use super::{
    AppState,
    error::ApiQuery,
    views::{Traffic, time},
};
use crate::{ifaces::format_mac, snapshot::Snapshot};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/stream", get(stream))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

/// How often the handler looks for a new drain.
const POLL: Duration = Duration::from_millis(100);
/// Devices listed in each summary.
const TOP: usize = 5;

#[derive(Serialize)]
struct Summary {
    time: String,
    interval_seconds: f64,
    interfaces: Vec<InterfaceSummary>,
    devices: usize,
    flows: usize,
    top_senders: Vec<Sender>,
}

#[derive(Serialize)]
struct InterfaceSummary {
    name: String,
    rx: Traffic,
    tx: Traffic,
}

#[derive(Serialize)]
struct Sender {
    interface: String,
    mac: String,
    tx: Traffic,
}

fn summary(s: &Snapshot) -> Summary {
    let mut senders: Vec<_> = s.devices.iter().collect();
    senders.sort_by(|a, b| {
        b.tx.rate
            .bits_per_second
            .total_cmp(&a.tx.rate.bits_per_second)
    });
    Summary {
        time: s.updated.map(time).unwrap_or_default(),
        interval_seconds: s.interval.as_secs_f64(),
        interfaces: s
            .interfaces
            .iter()
            .map(|i| InterfaceSummary {
                name: i.name.clone(),
                rx: (&i.totals.rx).into(),
                tx: (&i.totals.tx).into(),
            })
            .collect(),
        devices: s.devices.len(),
        flows: s.flow_table.entries as usize,
        top_senders: senders
            .into_iter()
            .take(TOP)
            .map(|d| Sender {
                interface: s.iface_name(d.ifindex),
                mac: format_mac(d.mac),
                tx: (&d.tx).into(),
            })
            .collect(),
    }
}

#[utoipa::path(get, path = "/api/v1/stream", operation_id = "stream", tag = "traffic",
    responses((status = 200, description = "Server-sent events: a summary every interval.",
        content_type = "text/event-stream", body = String)))]
async fn stream(
    State(state): State<AppState>,
    ApiQuery(Params {}): ApiQuery<Params>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // The first event is the drain current at connection time.
    let events = stream::unfold((state, None::<Arc<Snapshot>>), |(state, last)| async move {
        loop {
            let s = state.snapshot.get();
            let new = s.updated.is_some() && last.as_ref().is_none_or(|l| l.updated != s.updated);
            if new {
                let event = Event::default()
                    .event("interval")
                    .json_data(summary(&s))
                    .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()));
                return Some((Ok(event), (state, Some(s))));
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
