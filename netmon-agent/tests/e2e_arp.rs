//! End-to-end tests of the security collector's ARP checks: the real agent
//! in the gateway namespace of a bridged LAN (`common::Lan`, 10.0.0.0/24
//! on `br0`) with its discovery sweeping, hosts in namespaces of their own
//! claiming each other's addresses with `ip addr add` (Linux answers ARP
//! for any address it holds), `GET /api/v1/security` and
//! `GET /api/v1/alerts` read over real HTTP.
//!
//! Privileged: run as root (cargo xtask test does). The namespaces go with
//! the `Lan` guard, whatever happens.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// A few sweeps.
const WAIT: Duration = Duration::from_secs(20);

const ARGS: &[&str] = &[
    "--iface=br0",
    "--discovery-interval=200ms",
    "--discovery-sweep-interval=1s",
    "--discovery-sweep-rate=2000",
    "--discovery-sweep-wait=300ms",
    "--security-interval=200ms",
];

const ARP_KINDS: [&str; 3] = ["arp_spoofing", "arp_mac_changed", "gateway_impersonation"];

fn storm(body: &Value, mac: [u8; 6]) -> Option<&Value> {
    body["findings"]
        .as_array()?
        .iter()
        .find(|f| f["kind"] == "gratuitous_arp_storm" && f["macs"][0] == format_mac(mac).as_str())
}

fn findings(body: &Value) -> Vec<&Value> {
    body["findings"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter(|f| ARP_KINDS.iter().any(|k| f["kind"] == *k))
                .collect()
        })
        .unwrap_or_default()
}

fn finding<'a>(body: &'a Value, kind: &str, ip: &str) -> Option<&'a Value> {
    findings(body)
        .into_iter()
        .find(|f| f["kind"] == kind && f["ip"] == ip)
}

fn macs(f: &Value) -> Vec<String> {
    f["macs"]
        .as_array()
        .map(|m| m.iter().map(|m| m.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Waits until every host of `lan` was found by the sweep, then until
/// security has read discovery at least once with no ARP finding.
fn settle(agent: &Agent, lan: &Lan) {
    agent.wait_for("/api/v1/devices", WAIT, |body| {
        lan.hosts().iter().all(|h| {
            body["devices"].as_array().is_some_and(|d| {
                d.iter().any(|d| {
                    d["mac"] == format_mac(h.mac())
                        && d["sources"]
                            .as_array()
                            .is_some_and(|s| s.iter().any(|s| s == "arp"))
                })
            })
        })
    });
    let body = agent.wait_for("/api/v1/security", WAIT, |b| {
        b["arp"]["addresses"].is_u64() && b["arp"]["heard"].is_u64()
    });
    assert!(findings(&body).is_empty(), "{body:#}");
}

#[test]
fn a_second_mac_for_an_address_is_spoofing_and_for_the_gateway_impersonation() {
    skip_unless_root!();
    let lan = Lan::new(3);
    let (h1, h2, h3) = (lan.host(1), lan.host(2), lan.host(3));
    // The agent's namespace routes through h1.
    lan.gw()
        .ip_line(&format!("route add default via {} dev br0", h1.ip4()));
    let agent = Agent::start(lan.gw(), ARGS);
    settle(&agent, &lan);
    let gw = agent.get("/api/v1/security");
    assert_eq!(
        gw["arp"]["gateways"],
        serde_json::json!([{"interface": "br0", "ip": h1.ip4().to_string()}]),
        "{gw:#}"
    );

    // h2 claims the gateway's address, h3 claims h2's.
    h2.ns()
        .ip_line(&format!("addr add {}/32 dev eth0", h1.ip4()));
    h3.ns()
        .ip_line(&format!("addr add {}/32 dev eth0", h2.ip4()));
    let (gw_ip, h2_ip) = (h1.ip4().to_string(), h2.ip4().to_string());
    let body = agent.wait_for("/api/v1/security", WAIT, |b| {
        finding(b, "gateway_impersonation", &gw_ip).is_some()
            && finding(b, "arp_spoofing", &h2_ip).is_some()
    });
    let imp = finding(&body, "gateway_impersonation", &gw_ip).unwrap();
    assert_eq!(imp["severity"], "critical", "{imp:#}");
    assert_eq!(imp["iface"], "br0", "{imp:#}");
    assert_eq!(
        macs(imp),
        [format_mac(h1.mac()), format_mac(h2.mac())],
        "{imp:#}"
    );
    let evidence = imp["evidence"].as_str().unwrap();
    assert!(
        evidence.starts_with(&format!(
            "the default gateway {gw_ip} of br0 is claimed by {} (first seen",
            format_mac(h2.mac())
        )) && evidence.ends_with("the first MAC seen with it, which still answers"),
        "{evidence}"
    );
    let spoof = finding(&body, "arp_spoofing", &h2_ip).unwrap();
    assert_eq!(spoof["severity"], "critical", "{spoof:#}");
    assert_eq!(spoof["iface"], "br0", "{spoof:#}");
    assert_eq!(
        macs(spoof),
        [format_mac(h2.mac()), format_mac(h3.mac())],
        "{spoof:#}"
    );
    assert!(
        spoof["first_seen"].is_string() && spoof["last_seen"].is_string(),
        "{spoof:#}"
    );
    // The gateway's address is one finding, not a spoofing one as well.
    assert!(finding(&body, "arp_spoofing", &gw_ip).is_none(), "{body:#}");
    assert_eq!(findings(&body).len(), 2, "{body:#}");

    // The security rule fires for each, by subject.
    let alerts = agent.wait_for("/api/v1/alerts", WAIT, |b| {
        let firing = |subject: &str| {
            b["alerts"].as_array().is_some_and(|a| {
                a.iter().any(|x| {
                    x["name"] == "security_critical"
                        && x["state"] == "firing"
                        && x["labels"]["subject"] == subject
                })
            })
        };
        firing(&format!("{gw_ip} on br0")) && firing(&format!("{h2_ip} on br0"))
    });
    let a = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["labels"]["kind"] == "arp_spoofing")
        .unwrap();
    assert_eq!(a["labels"]["severity"], "critical", "{a:#}");
}

#[test]
fn an_address_that_moves_to_another_mac_is_a_change() {
    skip_unless_root!();
    let lan = Lan::new(2);
    let (h1, h2) = (lan.host(1), lan.host(2));
    let agent = Agent::start(lan.gw(), ARGS);
    settle(&agent, &lan);
    // h1 leaves its address; h2 takes it.
    h1.ns()
        .ip_line(&format!("addr del {}/{PREFIX_V4} dev eth0", h1.ip4()));
    h2.ns()
        .ip_line(&format!("addr add {}/32 dev eth0", h1.ip4()));
    let ip = h1.ip4().to_string();
    let body = agent.wait_for("/api/v1/security", WAIT, |b| {
        finding(b, "arp_mac_changed", &ip).is_some()
    });
    let f = finding(&body, "arp_mac_changed", &ip).unwrap();
    assert_eq!(f["severity"], "warning", "{f:#}");
    assert_eq!(macs(f), [format_mac(h1.mac()), format_mac(h2.mac())]);
    assert!(
        f["evidence"]
            .as_str()
            .unwrap()
            .ends_with("a replaced device or a re-assigned address looks the same"),
        "{f:#}"
    );
    // A few more sweeps: still a change, never spoofing.
    std::thread::sleep(Duration::from_secs(3));
    let body = agent.get("/api/v1/security");
    assert!(finding(&body, "arp_spoofing", &ip).is_none(), "{body:#}");
    assert!(finding(&body, "arp_mac_changed", &ip).is_some(), "{body:#}");
}

#[test]
fn a_host_flooding_gratuitous_arp_is_a_storm_until_it_stops() {
    skip_unless_root!();
    let lan = Lan::new(2);
    let (h1, h2) = (lan.host(1), lan.host(2));
    let agent = Agent::start(lan.gw(), ARGS);
    settle(&agent, &lan);
    // h1 announces its address about 50 times a second (gratuitous ARP:
    // who-has its own address, from itself), while the test polls.
    let frame = arp_request(h1.mac(), h1.ip4(), h1.ip4());
    let mut found = None;
    let ok = poll_until(WAIT, || {
        h1.ns().run(|| {
            for _ in 0..5 {
                raw_frame_send("eth0", &frame);
            }
        });
        found = storm(&agent.get("/api/v1/security"), h1.mac()).cloned();
        found.is_some()
    });
    let body = agent.get("/api/v1/security");
    assert!(ok, "no storm: {body:#}");
    let f = found.unwrap();
    assert_eq!(f["severity"], "warning", "{f:#}");
    assert_eq!(f["iface"], "br0", "{f:#}");
    assert_eq!(f["ip"], h1.ip4().to_string(), "{f:#}");
    let evidence = f["evidence"].as_str().unwrap();
    assert!(
        evidence.starts_with(&format!("{} sent ", format_mac(h1.mac())))
            && evidence.ends_with(&format!("announcing {}", h1.ip4())),
        "{evidence}"
    );
    // The quiet host is no storm; when h1 stops, its finding goes.
    assert!(storm(&body, h2.mac()).is_none(), "{body:#}");
    agent.wait_for("/api/v1/security", WAIT, |b| storm(b, h1.mac()).is_none());
}
