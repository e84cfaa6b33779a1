//! Percentiles, per-player rate classification and /proc sampling.

use std::time::Instant;

/// Nearest-rank percentile of an already sorted slice (`p` in 0..=100); `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99 and max of unsorted samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub count: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Summary {
    pub fn of(mut samples: Vec<f64>) -> Self {
        samples.retain(|v| v.is_finite());
        samples.sort_by(f64::total_cmp);
        Self {
            count: samples.len(),
            p50: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
            max: samples.last().copied(),
        }
    }
}

/// Whether a player fell behind: it received less than `threshold` (0.9) of the stream's rate.
/// `expected` of 0 (unknown) never counts anyone as behind.
pub fn is_behind(received_bps: f64, expected_bps: f64, threshold: f64) -> bool {
    expected_bps > 0.0 && received_bps < threshold * expected_bps
}

/// Median of unsorted values (for a stream's rate when nobody in-process publishes it).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0).unwrap_or(0.0)
}

/// CPU time (user + system) and RSS of a process, from /proc.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    pub cpu_secs: f64,
    pub rss_bytes: u64,
}

impl ProcSample {
    /// `pid` of `None` samples this process.
    pub fn read(pid: Option<u32>) -> Option<Self> {
        let base = match pid {
            Some(p) => format!("/proc/{p}"),
            None => "/proc/self".to_owned(),
        };
        let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("{base}/status")).ok()?;
        let ticks = clock_ticks();
        Some(Self {
            at: Instant::now(),
            cpu_secs: parse_stat_cpu_ticks(&stat)? as f64 / ticks,
            rss_bytes: parse_status_rss(&status)?,
        })
    }

    /// CPU use between two samples, in percent of one core.
    pub fn cpu_percent_since(&self, earlier: &ProcSample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        100.0 * (self.cpu_secs - earlier.cpu_secs) / wall
    }
}

/// Busy and total jiffies of one CPU (`cpuN` line of /proc/stat); busy counts everything
/// but idle and iowait, so softirq work done for the server (loopback TCP) is included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoreSample {
    pub busy: u64,
    pub total: u64,
}

impl CoreSample {
    pub fn read(core: usize) -> Option<Self> {
        parse_proc_stat_core(&std::fs::read_to_string("/proc/stat").ok()?, core)
    }

    /// Busy % of the core between two samples.
    pub fn busy_percent_since(&self, earlier: &CoreSample) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

pub fn parse_proc_stat_core(stat: &str, core: usize) -> Option<CoreSample> {
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some(CoreSample {
        busy: total - v[3] - v[4],
        total,
    })
}

#[allow(
    unsafe_code,
    reason = "the clock tick rate comes only from sysconf (libc); no safe wrapper in std"
)]
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime (fields 14 and 15) of /proc/PID/stat; the command name (field 2) may contain
/// spaces and parentheses, so fields are counted after its last ')'.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS of /proc/PID/status, in bytes.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_sorts_and_drops_nan() {
        let s = Summary::of(vec![3.0, f64::NAN, 1.0, 2.0]);
        assert_eq!(s.count, 3);
        assert_eq!((s.p50, s.p99, s.max), (Some(2.0), Some(3.0), Some(3.0)));
        assert_eq!(Summary::of(vec![]).p50, None);
    }

    #[test]
    fn behind_threshold() {
        assert!(is_behind(0.89e6, 1e6, 0.9));
        assert!(!is_behind(0.9e6, 1e6, 0.9));
        assert!(!is_behind(0.0, 0.0, 0.9));
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
    }

    #[test]
    fn core_busy() {
        let a = "cpu  1 2 3 4\ncpu0 100 0 50 800 50 0 0 0 0 0\ncpu1 1 1 1 1 1 1 1 1\n";
        let b = "cpu  1 2 3 4\ncpu0 150 0 100 850 50 0 0 0 0 0\ncpu1 1 1 1 1 1 1 1 1\n";
        let (a, b) = (
            parse_proc_stat_core(a, 0).unwrap(),
            parse_proc_stat_core(b, 0).unwrap(),
        );
        assert_eq!(
            a,
            CoreSample {
                busy: 150,
                total: 1000
            }
        );
        assert_eq!(b.busy_percent_since(&a), 100.0 * 100.0 / 150.0);
        assert!(parse_proc_stat_core("cpu0 1 2\n", 1).is_none());
    }

    #[test]
    fn proc_parsing() {
        let stat = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(175));
        let status = "Name:\tx\nVmPeak:\t 100 kB\nVmRSS:\t   2048 kB\nThreads: 1\n";
        assert_eq!(parse_status_rss(status), Some(2 * 1024 * 1024));
        assert!(parse_stat_cpu_ticks("garbage").is_none());
        let me = ProcSample::read(None).expect("/proc/self readable");
        assert!(me.rss_bytes > 0);
    }
}
