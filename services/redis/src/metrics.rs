//! Redis metrics: every command's latency and failures, by operation.

use liverelay_metrics::{Registry, latency_histogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

/// `register` adds the families to a process's registry; `default()` counts without exposing
/// anything (unit tests).
#[derive(Clone, Debug)]
pub struct RedisMetrics {
    pub op_duration: Family<OpLabel, Histogram>,
    pub errors: Family<OpLabel, Counter>,
}

impl Default for RedisMetrics {
    fn default() -> Self {
        Self {
            op_duration: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
        }
    }
}

impl RedisMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "liverelay_redis_operation_duration_seconds",
            "Redis registry operations",
            m.op_duration.clone(),
        );
        registry.register(
            "liverelay_redis_errors",
            "Redis registry operations that failed",
            m.errors.clone(),
        );
        m
    }
}
