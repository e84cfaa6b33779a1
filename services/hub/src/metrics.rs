//! The hub's metrics: stream counts and per-stream figures, read from the hub's own counters
//! and rates ([`StreamStats`](crate::StreamStats), the media-timeline rate meter) when
//! `/metrics` is scraped, never updated on the media path for metrics' sake. At most
//! `max_stream_series` streams get their own series (the most watched first), to bound
//! cardinality.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::{Hub, StreamSummary};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    app: String,
    stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

pub struct HubCollector {
    hub: Hub,
    max_stream_series: usize,
}

impl HubCollector {
    pub fn new(hub: Hub, max_stream_series: usize) -> Self {
        Self {
            hub,
            max_stream_series,
        }
    }
}

/// Writes one family with one sample per stream.
fn family<M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    streams: &[StreamSummary],
    value: impl Fn(&StreamSummary) -> M,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for s in streams {
        let labels = StreamLabels {
            app: s.key.app.clone(),
            stream: s.key.name.clone(),
        };
        value(s).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl std::fmt::Debug for HubCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubCollector")
            .field("max_stream_series", &self.max_stream_series)
            .finish()
    }
}

impl Collector for HubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut streams = self.hub.streams();
        let live = streams.iter().filter(|s| s.live).count() as i64;
        let idle = streams.len() as i64 - live;
        let viewers: u64 = streams.iter().map(|s| s.viewers).sum();

        let mut by_state = encoder.encode_descriptor(
            "liverelay_streams",
            "Streams held, live or waiting for a publisher",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(live).encode(by_state.encode_family(&StateLabel { state: "live" })?)?;
        ConstGauge::new(idle).encode(by_state.encode_family(&StateLabel { state: "idle" })?)?;
        ConstGauge::new(live).encode(encoder.encode_descriptor(
            "liverelay_publishers",
            "Publishers live in this process",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(viewers as i64).encode(encoder.encode_descriptor(
            "liverelay_viewers",
            "Viewers (and relay subscribers) in this process",
            None,
            MetricType::Gauge,
        )?)?;

        ConstGauge::new(self.hub.batching().audio_hold().as_secs_f64()).encode(
            encoder.encode_descriptor(
                "liverelay_audio_hold_seconds",
                "How long audio may wait for the next video frame now (follows the load)",
                None,
                MetricType::Gauge,
            )?,
        )?;

        // Bounded cardinality: the most watched streams get their own series.
        streams.sort_by(|a, b| b.viewers.cmp(&a.viewers).then_with(|| a.key.cmp(&b.key)));
        let omitted = streams.len().saturating_sub(self.max_stream_series);
        streams.truncate(self.max_stream_series);
        ConstGauge::new(omitted as i64).encode(encoder.encode_descriptor(
            "liverelay_stream_series_omitted",
            "Streams left out of the per-stream series by the cardinality cap",
            None,
            MetricType::Gauge,
        )?)?;

        let e = &mut encoder;
        family(
            e,
            "liverelay_stream_viewers",
            "Viewers of a stream",
            &streams,
            |s| ConstGauge::new(s.viewers as i64),
        )?;
        family(
            e,
            "liverelay_stream_ingress_bytes",
            "Media bytes received from the publisher",
            &streams,
            |s| ConstCounter::new(s.bytes_in),
        )?;
        family(
            e,
            "liverelay_stream_egress_bytes",
            "Bytes sent to the stream's viewers",
            &streams,
            |s| ConstCounter::new(s.bytes_out),
        )?;
        family(
            e,
            "liverelay_stream_frames",
            "Media messages received from the publisher",
            &streams,
            |s| ConstCounter::new(s.frames_in),
        )?;
        family(
            e,
            "liverelay_stream_frames_dropped",
            "Frames skipped for viewers that fell behind",
            &streams,
            |s| ConstCounter::new(s.frames_dropped),
        )?;
        // Base unit bytes, as Prometheus naming (and promtool) asks; dashboards show bits.
        family(
            e,
            "liverelay_stream_bitrate_bytes_per_second",
            "Stream bitrate over its last 2 s of media",
            &streams,
            |s| ConstGauge::new(s.rates.bitrate_bps / 8.0),
        )?;
        family(
            e,
            "liverelay_stream_video_frames_per_second",
            "Video frame rate over the last 2 s of media",
            &streams,
            |s| ConstGauge::new(s.rates.frame_rate),
        )?;
        family(
            e,
            "liverelay_stream_keyframe_interval_seconds",
            "Time between the last two keyframes",
            &streams,
            |s| ConstGauge::new(s.rates.keyframe_interval_ms as f64 / 1000.0),
        )?;
        family(
            e,
            "liverelay_stream_gop_cache_bytes",
            "Bytes of the cached GOP new viewers start from",
            &streams,
            |s| ConstGauge::new(s.gop_cache_bytes as i64),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use liverelay_rtmp::{Media, MediaKind};
    use liverelay_types::StreamId;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::HubConfig;

    #[test]
    fn streams_and_the_most_watched_stream_are_exposed() {
        let hub = Hub::new(HubConfig::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(HubCollector::new(hub.clone(), 1)));
        let mut publisher = hub.publish(StreamId::new("live", "a")).unwrap();
        let _viewer = hub.play(StreamId::new("live", "a")).unwrap();
        let _waiting = hub.play(StreamId::new("live", "b")).unwrap();
        publisher.push(Media {
            kind: MediaKind::Video,
            timestamp: 0,
            payload: Bytes::from_static(&[0x17, 1, 0, 0, 0]),
        });

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "liverelay_streams{state=\"live\"} 1",
            "liverelay_streams{state=\"idle\"} 1",
            "liverelay_publishers 1",
            "liverelay_viewers 2",
            "liverelay_stream_series_omitted 1",
            "liverelay_stream_viewers{app=\"live\",stream=\"a\"} 1",
            "liverelay_stream_ingress_bytes_total{app=\"live\",stream=\"a\"} 5",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("stream=\"b\""),
            "the cap keeps the most watched stream only"
        );
    }
}
