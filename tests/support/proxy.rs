//! A TCP proxy that can make its Redis subscription connections half-open: after
//! [`FreezingProxy::freeze_subscriptions`], every connection that has sent `SUBSCRIBE` forwards
//! nothing more in either direction but stays open at both ends, which is what a partition or
//! a vanished peer looks like to each side. Other connections, and later ones, go through.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One proxied connection: whether it subscribed, whether it is frozen.
#[derive(Default)]
struct Link {
    subscribed: AtomicBool,
    frozen: AtomicBool,
}

pub struct FreezingProxy {
    pub addr: SocketAddr,
    links: Arc<Mutex<Vec<Arc<Link>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FreezingProxy {
    /// Forwards a free local port to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<Arc<Link>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (links, stop) = (links.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let Ok(server) = TcpStream::connect(upstream) else {
                        continue;
                    };
                    let link = Arc::new(Link::default());
                    links.lock().unwrap().push(link.clone());
                    for (from, to, outbound) in [
                        (
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            true,
                        ),
                        (server, client, false),
                    ] {
                        let (link, stop) = (link.clone(), stop.clone());
                        std::thread::spawn(move || pump(from, to, outbound, &link, &stop));
                    }
                }
            })
        };
        Self {
            addr,
            links,
            stop,
            thread: Some(thread),
        }
    }

    /// Makes every connection that has subscribed half-open; returns how many.
    pub fn freeze_subscriptions(&self) -> usize {
        let links = self.links.lock().unwrap();
        let subscribed = links.iter().filter(|l| l.subscribed.load(Ordering::SeqCst));
        subscribed
            .inspect(|l| l.frozen.store(true, Ordering::SeqCst))
            .count()
    }
}

/// Copies `from` to `to` until either closes; once the link is frozen it holds both sockets
/// open and silent until the proxy stops.
fn pump(mut from: TcpStream, mut to: TcpStream, outbound: bool, link: &Link, stop: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if link.frozen.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if outbound && contains(&buf[..n], b"SUBSCRIBE") {
                    link.subscribed.store(true, Ordering::SeqCst);
                }
                // Bytes read just as the link froze are dropped: a frozen link forwards nothing.
                if link.frozen.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
