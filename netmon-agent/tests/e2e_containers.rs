//! The containers collector against a real container engine: Podman's
//! Engine API service (Debian's `podman` with `runc`), run inside a test
//! namespace so the container's bridge and veth live there, and the agent
//! in the same namespace.
//!
//! The container runs bash from a root filesystem the test builds from the
//! host's binaries (no image, no registry). It waits for a file, then
//! sends UDP datagrams to its bridge. `/api/v1/containers` must list it
//! running, with CPU and memory from the engine, and its traffic on the
//! host-side veth exactly what the kernel counted there (every datagram
//! and the ARP before them), over a few more intervals too.
//!
//! Needs root, `podman` and `runc`: `cargo xtask test` installs them.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::*;
use serde_json::Value;

const DATAGRAMS: u64 = 50;
const PAYLOAD: u64 = 100;
/// Names of this test's containers and networks (swept when stale).
const PREFIX: &str = "nmh-ctr";

fn podman(args: &[&str]) -> Result<String, String> {
    let out = Command::new("podman")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("podman {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "podman {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Removes containers and networks a crashed earlier run left behind.
fn sweep() {
    if let Ok(ids) = podman(&["ps", "-a", "-q", "--filter", &format!("name=^{PREFIX}-")]) {
        for id in ids.split_whitespace() {
            let _ = podman(&["rm", "-f", "-t", "0", id]);
        }
    }
    if let Ok(nets) = podman(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name=^{PREFIX}-"),
    ]) {
        for n in nets.split_whitespace() {
            let _ = podman(&["network", "rm", "-f", n]);
        }
    }
}

/// A root filesystem with bash and sleep and the libraries they load.
fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "dev", "proc", "sys", "etc", "go"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for bin in ["/bin/bash", "/bin/sleep"] {
        std::fs::copy(bin, root.join(&bin[1..])).unwrap();
        let ldd = Command::new("ldd").arg(bin).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let to = root.join(&lib[1..]);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(lib, &to).unwrap();
        }
    }
    root
}

/// The engine's service, the container and its network; all removed on
/// drop, however the test ends.
struct Engine {
    service: Child,
    socket: PathBuf,
    names: Vec<String>,
    network: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = podman(&["rm", "-f", "-t", "0", n]);
        }
        let _ = podman(&["network", "rm", "-f", &self.network]);
        let _ = self.service.kill();
        let _ = self.service.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Engine {
    fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

#[test]
fn a_container_is_listed_with_its_engine_figures_and_its_exact_traffic() {
    skip_unless_root!();
    for tool in ["podman", "runc"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .status()
                .unwrap()
                .success(),
            "{tool} is missing: `cargo xtask test` installs it (apt-get install podman runc)"
        );
    }
    sweep();
    let ns = NetNs::new("ctr");
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs(tmp.path());
    let id = std::process::id();
    let network = format!("{PREFIX}-{id}");
    let name = format!("{PREFIX}-{id}-a");
    let socket = tmp.path().join("podman.sock");
    // The service runs in the test namespace (nsenter keeps the host's
    // mounts, which runc needs for cgroups), so what it creates for a
    // container's network (bridge, veth) is created there.
    let service = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args([
            "podman",
            "--runtime",
            "runc",
            "system",
            "service",
            "--time=0",
        ])
        .arg(format!("unix://{}", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("podman system service");
    let engine = Engine {
        service,
        socket,
        names: vec![name.clone()],
        network: network.clone(),
    };
    assert!(
        poll_until(Duration::from_secs(20), || engine.socket.exists()),
        "the podman service made no socket"
    );
    // An internal network: no route out of the namespace.
    let subnet = format!("10.{}.{}.0/24", 200 + id % 50, id % 250);
    let gateway = subnet.replace(".0/24", ".1");
    podman(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        &subnet,
        &network,
    ])
    .unwrap();
    std::fs::create_dir_all(tmp.path().join("go")).unwrap();
    let script = format!(
        "while [ ! -e /go/start ]; do sleep 0.1; done; \
         p=$(printf '%0{PAYLOAD}d' 0); \
         for ((i = 0; i < {DATAGRAMS}; i++)); do echo -n \"$p\" > /dev/udp/{gateway}/9; done; \
         exec sleep 600"
    );
    podman(&[
        "--url",
        &engine.url(),
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &network,
        // The sandbox's hard limits are below Podman's defaults.
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        // No IPv6: nothing but the datagrams and their ARP leaves it.
        "--sysctl",
        "net.ipv6.conf.all.disable_ipv6=1",
        "-v",
        &format!("{}:/go", tmp.path().join("go").display()),
        "--rootfs",
        root.to_str().unwrap(),
        "/bin/bash",
        "-c",
        &script,
    ])
    .unwrap();
    let veth = ns
        .ip(&["-o", "link", "show", "type", "veth"])
        .split(':')
        .nth(1)
        .map(|s| s.trim().split('@').next().unwrap().to_owned())
        .expect("the container's veth in the test namespace");

    let agent = Agent::start(
        &ns,
        &[
            "--interval=200ms",
            "--containers-interval=300ms",
            &format!("--containers-socket={}", engine.socket.display()),
            "--disable=latency,discovery",
        ],
    );
    // Listed, running, with the engine's figures (CPU from the second
    // cycle on).
    let container = |r: &Value| -> Option<Value> {
        r["containers"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == name.as_str())
            .cloned()
    };
    let r = agent.wait_ok("/api/v1/containers", Duration::from_secs(30), |r| {
        container(r).is_some_and(|c| c["cpu_percent"].is_number())
    });
    let c = container(&r).unwrap();
    assert_eq!(c["state"], "running", "{c:#}");
    assert!(c["memory_bytes"].as_u64().is_some_and(|m| m > 0), "{c:#}");
    assert_eq!(r["engine"]["name"], "Podman Engine", "{r:#}");
    let mac = c["endpoints"][0]["mac"].as_str().unwrap().to_owned();
    assert_eq!(c["endpoints"][0]["network"], network.as_str(), "{c:#}");

    // Quiet so far: the kernel's counters now are the baseline.
    let before = ns.if_stats(&veth);
    std::fs::write(tmp.path().join("go/start"), "").unwrap();
    let sent = DATAGRAMS * (14 + 20 + 8 + PAYLOAD);
    let on_veth = |r: &Value| -> Option<Value> {
        container(r)?["traffic"]
            .as_array()?
            .iter()
            .find(|t| t["interface"] == veth.as_str())
            .cloned()
    };
    agent.wait_ok("/api/v1/containers", Duration::from_secs(30), |r| {
        on_veth(r).is_some_and(|t| t["tx_bytes"].as_u64() >= Some(sent))
    });
    // The container's frames arrive on the host-side veth: its tx is the
    // veth's rx, to the byte, now and a few intervals later.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(700));
        let kernel = ns.if_stats(&veth).since(&before);
        let t = on_veth(&agent.get("/api/v1/containers")).unwrap();
        assert_eq!(t["mac"], mac.as_str());
        // With netmon's native XDP program on the veth, the kernel's
        // rx_bytes there miss the 14-byte Ethernet header of each frame
        // (see e2e_traffic's Port); netmon counts L2 lengths.
        let l2 = kernel.rx_bytes + 14 * kernel.rx_packets;
        assert_eq!(
            (t["tx_bytes"].as_u64(), t["tx_packets"].as_u64()),
            (Some(l2), Some(kernel.rx_packets)),
            "the container's traffic on {veth} against the kernel's counters: {t:#}"
        );
        assert!(l2 >= sent, "{kernel:?}");
    }
    let m = http_get_ok(&ns, "/metrics", &[("X-API-KEY", TEST_KEY)]).text;
    assert!(
        m.lines()
            .any(|l| l.starts_with("netmon_containers{state=\"running\"} ") && !l.ends_with(" 0")),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with("netmon_container_info{")
            && l.contains(&format!("name=\"{name}\""))
            && l.contains(&format!("mac=\"{mac}\""))),
        "{m}"
    );
    drop(agent);
    drop(engine);
}
