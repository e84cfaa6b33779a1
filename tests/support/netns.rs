//! Real network faults between test processes: a [`Lab`] puts each host in a network namespace
//! of its own, joined by veth pairs to a bridge in this host's namespace, which has an address
//! on the bridge too, so the test process itself reaches every host (players, publishers, HTTP)
//! while faults are made between hosts by nftables rules inside their namespaces ([`Fault`]).
//!
//! Addresses come from 198.18.0.0/15, the range set aside for network tests (RFC 2544): one
//! /24 per lab (the first free one), `.1` for the bridge, `.10` onwards for the hosts. Names
//! carry the test process's pid, so parallel runs do not collide, and a lab whose process is
//! gone (crashed, killed) is removed when the next one is made; everything is removed on drop,
//! also when the test panics.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::Place;

/// Hosts in their own namespaces on one bridge.
pub struct Lab {
    bridge: String,
    hosts: Vec<Host>,
    /// The bridge's address: where the test process is seen from the hosts.
    pub gateway: Ipv4Addr,
}

/// One namespace of a [`Lab`] and its address.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    /// This host's veth in the root namespace (on the bridge).
    link: String,
}

impl Lab {
    /// Hosts `names` (at most 9) on a /24 of their own; `tag` (at most 4 bytes) tells this
    /// test's lab from the others of the process, whose pid names them all. `None`, after
    /// printing why, when this machine cannot make them (not root, no `ip` or `nft`,
    /// namespaces not allowed): the caller skips its test.
    pub fn new(tag: &str, names: &[&str]) -> Option<Self> {
        assert!(
            tag.len() <= 4 && names.len() <= 9,
            "interface names have at most 15 bytes"
        );
        if let Some(why) = unavailable() {
            eprintln!("SKIPPED: network fault tests need {why}");
            return None;
        }
        // Labs are made one at a time, so that each finds its subnet free.
        static MAKING: Mutex<()> = Mutex::new(());
        let _making = MAKING.lock().unwrap_or_else(|e| e.into_inner());
        remove_stale();
        let pid = std::process::id();
        let id = format!("lr-{}-{tag}", base36(pid));
        let subnet = free_subnet();
        let hosts: Vec<Host> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Host {
                name: name.to_string(),
                ns: format!("lrc-{pid}-{tag}-{name}"),
                ip: Ipv4Addr::new(198, 18, subnet, 10 + i as u8),
                link: format!("{id}{i}"),
            })
            .collect();
        let lab = Self {
            bridge: id,
            hosts,
            gateway: Ipv4Addr::new(198, 18, subnet, 1),
        };
        if let Err(e) = run(["ip", "netns", "add", &lab.hosts[0].ns]) {
            eprintln!("SKIPPED: network fault tests need network namespaces: {e}");
            return None;
        }
        lab.build();
        Some(lab)
    }

    fn build(&self) {
        let br = self.bridge.as_str();
        must([
            "ip",
            "link",
            "add",
            br,
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        must([
            "ip",
            "addr",
            "add",
            &format!("{}/24", self.gateway),
            "dev",
            br,
        ]);
        must(["ip", "link", "set", br, "up"]);
        for (i, host) in self.hosts.iter().enumerate() {
            if i > 0 {
                must(["ip", "netns", "add", &host.ns]);
            }
            let peer = format!("{}p", host.link);
            must([
                "ip", "link", "add", &host.link, "type", "veth", "peer", "name", &peer,
            ]);
            must(["ip", "link", "set", &peer, "netns", &host.ns]);
            must(["ip", "link", "set", &host.link, "master", br, "up"]);
            let inside = |args: &[&str]| {
                must(["ip", "netns", "exec", &host.ns, "ip"].iter().chain(args));
            };
            inside(&["link", "set", "lo", "up"]);
            inside(&["link", "set", &peer, "name", "eth0"]);
            inside(&["addr", "add", &format!("{}/24", host.ip), "dev", "eth0"]);
            inside(&["link", "set", "eth0", "up"]);
        }
    }

    /// Deletes every link and namespace of this lab that exists.
    fn remove(&self) {
        for host in &self.hosts {
            let _ = run(["ip", "link", "del", &host.link]);
            let _ = run(["ip", "netns", "del", &host.ns]);
        }
        let _ = run(["ip", "link", "del", &self.bridge]);
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in this lab"))
    }

    /// Drops every packet between hosts `a` and `b` (rules in `a`'s namespace, both ways) until
    /// the fault is healed or dropped: a partition, with both ends still up.
    pub fn partition(&self, a: &str, b: &str) -> Fault {
        let (a, b) = (self.host(a), self.host(b));
        Fault::install(
            a,
            &format!("ip saddr {} drop", b.ip),
            &format!("ip daddr {} drop", b.ip),
        )
    }

    /// Drops `percent` % of the packets, at random, that `host` exchanges with TCP port `port`
    /// of `peer`.
    pub fn lossy(&self, host: &str, peer: SocketAddr, percent: u8) -> Fault {
        let lose = format!("numgen random mod 100 < {percent} drop");
        let (ip, port) = (peer.ip(), peer.port());
        Fault::install(
            self.host(host),
            &format!("ip saddr {ip} tcp sport {port} {lose}"),
            &format!("ip daddr {ip} tcp dport {port} {lose}"),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.remove();
    }
}

impl Host {
    /// Where servers of this host run (for [`super::Server::start_at`] and the Redis helper).
    pub fn place(&self) -> Place {
        Place {
            netns: Some(self.ns.clone()),
            ip: Some(IpAddr::V4(self.ip)),
        }
    }
}

/// nftables rules in one namespace, removed when healed or dropped.
pub struct Fault {
    ns: String,
    table: String,
}

impl Fault {
    fn install(host: &Host, input: &str, output: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let table = format!("fault{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let rules = format!(
            "table inet {table} {{\n\
             chain input {{ type filter hook input priority 0; {input}; }}\n\
             chain output {{ type filter hook output priority 0; {output}; }}\n}}\n"
        );
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &host.ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft runs");
        nft.stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        let out = nft.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -f in {}: {}\n{rules}",
            host.ns,
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            ns: host.ns.clone(),
            table,
        }
    }

    /// Removes the rules now.
    pub fn heal(self) {}
}

impl Drop for Fault {
    fn drop(&mut self) {
        let _ = run([
            "ip",
            "netns",
            "exec",
            &self.ns,
            "nft",
            "delete",
            "table",
            "inet",
            &self.table,
        ]);
    }
}

/// Removes what labs of test processes that are gone left behind (a crash, a kill -9): their
/// namespaces (`lrc-PID-…`) and their bridges and veths (`lr-PID36-…`).
fn remove_stale() {
    let gone =
        |pid: Option<u32>| pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
    let listed = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("ip runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for line in listed(&["netns", "list"]).lines() {
        let ns = line.split_whitespace().next().unwrap_or_default();
        let pid = ns
            .strip_prefix("lrc-")
            .and_then(|rest| rest.split('-').next()?.parse().ok());
        if gone(pid) {
            let _ = run(["ip", "netns", "del", ns]);
        }
    }
    // Veths too: a namespace that sockets still hold (TIME_WAIT) keeps its veths for a while.
    for line in listed(&["-o", "link", "show"]).lines() {
        let Some(name) = line.split(": ").nth(1).and_then(|n| n.split('@').next()) else {
            continue;
        };
        let pid = name
            .strip_prefix("lr-")
            .and_then(|rest| u32::from_str_radix(rest.split('-').next()?, 36).ok());
        if gone(pid) {
            let _ = run(["ip", "link", "del", name]);
        }
    }
}

/// The first 198.18.X.0/24 no interface here has an address in.
fn free_subnet() -> u8 {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .expect("ip runs");
    let text = String::from_utf8_lossy(&out.stdout);
    (1..=254)
        .find(|x| !text.contains(&format!("inet 198.18.{x}.")))
        .expect("a free subnet in 198.18.0.0/16")
}

/// `n` in base 36: a pid short enough for an interface name.
fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(std::char::from_digit(n % 36, 36).unwrap());
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// Why this machine cannot run the lab, if it cannot.
fn unavailable() -> Option<String> {
    #[allow(unsafe_code, reason = "geteuid has no safe std wrapper")]
    // SAFETY: geteuid cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        return Some("root (ip netns, nft)".into());
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        if run(["sh", "-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!(
                "`{tool}` (Debian package {package}; `make test-deps`)"
            ));
        }
    }
    None
}

fn run<I, S>(args: I) -> Result<(), String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let out = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args[0].as_ref().to_string_lossy()))?;
    if out.status.success() {
        Ok(())
    } else {
        let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        Err(format!(
            "`{}`: {}",
            shown.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must<I, S>(args: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    if let Err(e) = run(args) {
        panic!("setting up the network lab: {e}");
    }
}

/// A TCP forwarder that holds every byte for a set delay in each direction, in order: the
/// latency half of `tc netem delay`, which kernels without `sch_netem` (this one among them)
/// cannot add. Listens on `ip` (a lab's gateway); forwards to the target set with
/// [`DelayLink::forward_to`]. The delay can change while connections run.
pub struct DelayLink {
    pub addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    target: Arc<Mutex<Option<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl DelayLink {
    pub fn start(ip: Ipv4Addr) -> Self {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let link = Self {
            addr: listener.local_addr().unwrap(),
            delay_ms: Arc::default(),
            target: Arc::default(),
            stop: Arc::default(),
        };
        let (delay, target, stop) = (
            link.delay_ms.clone(),
            link.target.clone(),
            link.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let to = *target.lock().unwrap();
                let Some(server) = to.and_then(|to| TcpStream::connect(to).ok()) else {
                    continue; // refused, as the target would be
                };
                client.set_nonblocking(false).unwrap();
                for (from, into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    delayed_copy(from, into, delay.clone(), stop.clone());
                }
            }
        });
        link
    }

    pub fn forward_to(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = Some(target);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for DelayLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads `from` and writes each chunk to `into` once it is `delay` old; the write side ends
/// when the read side does.
fn delayed_copy(
    mut from: TcpStream,
    mut into: TcpStream,
    delay: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due = Instant::now() + Duration::from_millis(delay.load(Ordering::Relaxed));
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if into.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = into.shutdown(std::net::Shutdown::Write);
    });
}
