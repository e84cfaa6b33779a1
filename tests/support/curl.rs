//! curl as the HTTP client of checks where the client matters: the HTTP version it speaks
//! (HTTP/2 by ALPN over TLS, h2c with prior knowledge, HTTP/1.1), its `User-Agent`, HTTPS
//! against a test's CA.

use std::process::Command;

/// What curl got.
pub struct Answer {
    /// 0 when nothing answered.
    pub status: u16,
    /// The HTTP version it spoke: "1.1", "2".
    pub version: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `curl OPTIONS... URL` (at most 20 s), the whole answer.
pub fn get(options: &[&str], url: &str) -> Answer {
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "-w", "\n%{http_code} %{http_version}"])
        .args(options)
        .arg(url)
        .output()
        .expect("curl runs (make test-deps installs it)");
    let mut body = out.stdout;
    let split = body
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("curl wrote its status");
    let tail = String::from_utf8_lossy(&body[split + 1..]).into_owned();
    body.truncate(split);
    let (status, version) = tail.split_once(' ').expect("status and version");
    Answer {
        status: status.parse().expect("a status"),
        version: version.to_owned(),
        body,
    }
}
