//! Viewers and the bytes sent to them, by protocol (`rtmp`, `flv`, `hls`). Several crates
//! update the same two families (the RTMP server its players, the HTTP routes HTTP-FLV and HLS),
//! so they are registered once per process, here, and handed to each.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The protocols viewers watch with.
pub const PROTOCOLS: [&str; 3] = ["rtmp", "flv", "hls"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: &'static str,
}

/// `register` adds the families to a process's registry; `default()` counts without exposing
/// anything (unit tests).
#[derive(Clone, Debug, Default)]
pub struct ViewerMetrics {
    /// Viewers now: RTMP and HTTP-FLV plays open, HLS sessions seen within their window.
    pub viewers: Family<ProtocolLabel, Gauge>,
    /// Bytes sent (queued for the socket) to viewers.
    pub bytes_out: Family<ProtocolLabel, Counter>,
}

impl ViewerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        // Every protocol has its series from the start, at 0: a dashboard shows the protocols
        // nobody uses yet, and rates have a starting point.
        for protocol in PROTOCOLS {
            m.gauge(protocol);
            m.bytes(protocol);
        }
        registry.register(
            "liverelay_viewers_by_protocol",
            "Viewers by protocol (rtmp, flv: plays open; hls: sessions seen within a window)",
            m.viewers.clone(),
        );
        registry.register(
            "liverelay_viewer_egress_bytes",
            "Bytes sent to viewers by protocol (rtmp, flv, hls)",
            m.bytes_out.clone(),
        );
        m
    }

    /// The gauge of one protocol's viewers.
    pub fn gauge(&self, protocol: &'static str) -> Gauge {
        self.viewers
            .get_or_create(&ProtocolLabel { protocol })
            .clone()
    }

    /// The byte counter of one protocol.
    pub fn bytes(&self, protocol: &'static str) -> Counter {
        self.bytes_out
            .get_or_create(&ProtocolLabel { protocol })
            .clone()
    }

    /// One viewer watching from now until the returned guard is dropped.
    pub fn watching(&self, protocol: &'static str) -> Watching {
        let viewers = self.gauge(protocol);
        viewers.inc();
        Watching {
            viewers,
            bytes: self.bytes(protocol),
        }
    }
}

/// A viewer counted in its protocol's gauge while this lives; counts the bytes sent to it.
#[derive(Debug)]
pub struct Watching {
    viewers: Gauge,
    bytes: Counter,
}

impl Watching {
    pub fn sent(&self, bytes: usize) {
        self.bytes.inc_by(bytes as u64);
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.viewers.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_viewer_counts_while_it_watches() {
        let m = ViewerMetrics::default();
        let a = m.watching("flv");
        let b = m.watching("flv");
        a.sent(10);
        b.sent(5);
        assert_eq!(m.gauge("flv").get(), 2);
        drop(a);
        assert_eq!(m.gauge("flv").get(), 1);
        assert_eq!(m.bytes("flv").get(), 15);
        assert_eq!(m.gauge("rtmp").get(), 0);
    }
}
