//! A webhook receiver for tests: an HTTP server on a free port that records every request and
//! answers as the test decides (status and `Location`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Hook {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Hook {
    /// The form fields: the body of a form POST, or the query of a GET.
    pub fn form(&self) -> HashMap<String, String> {
        let source: &[u8] = if self.method == "GET" {
            self.query.as_bytes()
        } else {
            &self.body
        };
        form_urlencoded::parse(source).into_owned().collect()
    }

    pub fn field(&self, name: &str) -> String {
        self.form().get(name).cloned().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            location: None,
        }
    }

    pub fn redirect(to: &str) -> Self {
        Self {
            status: 302,
            location: Some(to.into()),
        }
    }
}

type Answer = dyn Fn(&Hook) -> Reply + Send + Sync;

pub struct HookServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Hook>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HookServer {
    pub fn start(answer: impl Fn(&Hook) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let answer: Arc<Answer> = Arc::new(answer);
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((socket, _)) => {
                            let (seen, answer) = (seen.clone(), answer.clone());
                            std::thread::spawn(move || serve(socket, &seen, &*answer));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Hook> {
        self.seen.lock().unwrap().clone()
    }

    /// The first request `which` accepts, waiting up to `limit`.
    pub fn wait_for(&self, limit: Duration, which: impl Fn(&Hook) -> bool) -> Option<Hook> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(h) = self.seen().into_iter().find(|h| which(h)) {
                return Some(h);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut socket: TcpStream, seen: &Mutex<Vec<Hook>>, answer: &Answer) {
    socket.set_nonblocking(false).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while raw.len() < head_end + length {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let (path, query) = target
        .split_once('?')
        .map(|(p, q)| (p.to_string(), q.to_string()))
        .unwrap_or((target.clone(), String::new()));
    let hook = Hook {
        method,
        path,
        query,
        headers,
        body: raw[head_end..].to_vec(),
    };
    let reply = answer(&hook);
    seen.lock().unwrap().push(hook);
    let location = reply
        .location
        .map(|l| format!("Location: {l}\r\n"))
        .unwrap_or_default();
    let _ = write!(
        socket,
        "HTTP/1.1 {} X\r\n{location}Content-Length: 0\r\nConnection: close\r\n\r\n",
        reply.status
    );
}
