use std::fmt;
use std::str::FromStr;

use crate::Error;

/// `rtmp://host[:port]/app[/name]`, or `rtmps://` for RTMP over TLS. The app is the first path segment (as nginx-rtmp and
/// liverelay read it); the name is the rest, query string included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    pub host: String,
    pub port: u16,
    pub app: String,
    pub name: String,
    /// `rtmps://`: TLS to the server, whose certificate must be valid for `host`.
    pub tls: bool,
}

impl RtmpUrl {
    pub const DEFAULT_PORT: u16 = 1935;
    /// RTMPS services (platforms' ingest, load balancers) listen on 443.
    pub const DEFAULT_TLS_PORT: u16 = 443;

    /// `host:port`, for `TcpStream::connect`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The `tcUrl` sent in `connect`: `rtmp[s]://host:port/app`.
    pub fn tc_url(&self) -> String {
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        format!("{scheme}://{}/{}", self.addr(), self.app)
    }

    /// The same server and app with another stream name.
    pub fn with_name(&self, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..self.clone()
        }
    }
}

impl FromStr for RtmpUrl {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::BadUrl(s.to_owned());
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "rtmp" => (false, Self::DEFAULT_PORT),
            "rtmps" => (true, Self::DEFAULT_TLS_PORT),
            _ => return Err(bad()),
        };
        let (authority, path) = rest.split_once('/').ok_or_else(bad)?;
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => default_port,
                None => return Err(bad()),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
                None => (authority.to_owned(), default_port),
            }
        };
        let (app, name) = path.split_once('/').unwrap_or((path, ""));
        if host.is_empty() || app.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            host,
            port,
            app: app.to_owned(),
            name: name.to_owned(),
            tls,
        })
    }
}

impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.tc_url())?;
        if !self.name.is_empty() {
            write!(f, "/{}", self.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_app_name() {
        let u: RtmpUrl = "rtmp://127.0.0.1:1936/live/test?key=1".parse().unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 1936);
        assert_eq!(u.app, "live");
        assert_eq!(u.name, "test?key=1");
        assert_eq!(u.tc_url(), "rtmp://127.0.0.1:1936/live");
        assert_eq!(u.to_string(), "rtmp://127.0.0.1:1936/live/test?key=1");
    }

    #[test]
    fn default_port_ipv6_and_no_name() {
        let u: RtmpUrl = "rtmp://localhost/live".parse().unwrap();
        assert_eq!((u.port, u.name.as_str()), (1935, ""));
        let u: RtmpUrl = "rtmp://[::1]:99/a/b/c".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.app.as_str()), ("::1", 99, "a"));
        assert_eq!(u.name, "b/c");
        assert_eq!(u.addr(), "[::1]:99");
    }

    #[test]
    fn rtmps_defaults_to_port_443() {
        let u: RtmpUrl = "rtmps://live.example.com/app/key".parse().unwrap();
        assert!(u.tls);
        assert_eq!((u.host.as_str(), u.port), ("live.example.com", 443));
        assert_eq!(u.to_string(), "rtmps://live.example.com:443/app/key");
        let u: RtmpUrl = "RTMPS://h:1936/app".parse().unwrap();
        assert_eq!((u.tls, u.port), (true, 1936));
        assert!(!"rtmp://h/app".parse::<RtmpUrl>().unwrap().tls);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "http://x/live",
            "rtmp://",
            "rtmp://host",
            "rtmp:///live",
            "rtmp://h:x/live",
            "rtmp://[::1/live",
        ] {
            assert!(bad.parse::<RtmpUrl>().is_err(), "{bad}");
        }
    }
}
