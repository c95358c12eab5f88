//! What the kernel knows about a running process: peak RSS and CPU time,
//! read from /proc (no libc calls: the crate denies `unsafe`).

use std::collections::BTreeMap;
use std::time::Instant;

/// One reading of a process.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// `VmHWM`: the peak resident set size so far, in bytes.
    pub peak_rss: Option<u64>,
    /// Nanoseconds on CPU per live thread (first field of
    /// `/proc/PID/task/TID/schedstat`).
    pub threads: Option<BTreeMap<u32, u64>>,
    /// `utime`, `stime`, `cutime`, `cstime` from `/proc/PID/stat`, in clock ticks.
    pub stat: Option<StatTimes>,
}

/// CPU times from `/proc/PID/stat`, in clock ticks (`getconf CLK_TCK`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatTimes {
    pub utime: u64,
    pub stime: u64,
    /// CPU of children that have been waited for.
    pub cutime: u64,
    pub cstime: u64,
}

/// CPU time used between two samples, and how it was measured.
#[derive(Debug, Clone, Copy)]
pub struct CpuDelta {
    pub ns: u64,
    /// True when the figure comes from per-thread schedstat (ns precision);
    /// false when only `/proc/PID/stat` ticks were available.
    pub precise: bool,
    /// Threads present in the first sample but gone by the second: their
    /// CPU after the first sample is not counted.
    pub threads_gone: usize,
}

/// Reads everything at once, as close together as possible.
#[must_use]
pub fn sample(pid: u32) -> Sample {
    let at = Instant::now();
    let threads = threads_cpu_ns(pid);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| parse_stat(&t));
    let peak_rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| parse_status_kib(&t, "VmHWM"))
        .map(|kib| kib * 1024);
    Sample {
        at,
        peak_rss,
        threads,
        stat,
    }
}

/// Per-thread CPU nanoseconds; `None` if the process is gone or the
/// kernel does not keep schedstat.
fn threads_cpu_ns(pid: u32) -> Option<BTreeMap<u32, u64>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let entry = entry.ok()?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) {
            out.insert(tid, parse_schedstat(&text)?);
        }
    }
    // A kernel without CONFIG_SCHED_INFO prints zeros for every thread.
    (!out.is_empty() && out.values().any(|&ns| ns > 0)).then_some(out)
}

/// The first field of a schedstat line: nanoseconds on CPU.
#[must_use]
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// A `kB` field of `/proc/PID/status`, such as `VmHWM`.
#[must_use]
pub fn parse_status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Fields 14–17 of `/proc/PID/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
#[must_use]
pub fn parse_stat(text: &str) -> Option<StatTimes> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(StatTimes {
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
    })
}

/// Clock ticks per second for `/proc/PID/stat` (`getconf CLK_TCK`, else 100).
#[must_use]
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// Clock ticks to nanoseconds.
#[must_use]
pub fn ticks_to_ns(ticks: u64, per_second: u64) -> u64 {
    ticks.saturating_mul(1_000_000_000) / per_second.max(1)
}

impl Sample {
    /// CPU since the process started, own threads only.
    #[must_use]
    pub fn cpu_ns(&self, per_second: u64) -> Option<u64> {
        match (&self.threads, &self.stat) {
            (Some(threads), _) => Some(threads.values().sum()),
            (None, Some(stat)) => Some(ticks_to_ns(stat.utime + stat.stime, per_second)),
            (None, None) => None,
        }
    }

    /// CPU of the children this process has reaped.
    #[must_use]
    pub fn children_cpu_ns(&self, per_second: u64) -> Option<u64> {
        self.stat
            .map(|s| ticks_to_ns(s.cutime + s.cstime, per_second))
    }

    /// CPU used by the process's own threads between `earlier` and `self`.
    #[must_use]
    pub fn cpu_since(&self, earlier: &Self, per_second: u64) -> Option<CpuDelta> {
        if let (Some(now), Some(then)) = (&self.threads, &earlier.threads) {
            let ns = now
                .iter()
                .map(|(tid, &ns)| ns.saturating_sub(then.get(tid).copied().unwrap_or(0)))
                .sum();
            let threads_gone = then.keys().filter(|tid| !now.contains_key(tid)).count();
            return Some(CpuDelta {
                ns,
                precise: true,
                threads_gone,
            });
        }
        let (now, then) = (self.stat?, earlier.stat?);
        Some(CpuDelta {
            ns: ticks_to_ns(
                (now.utime + now.stime).saturating_sub(then.utime + then.stime),
                per_second,
            ),
            precise: false,
            threads_gone: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_fields() {
        use super::parse_status_kib;
        let text =
            "Name:\tsecret-gate\nVmPeak:\t   10000 kB\nVmHWM:\t    4321 kB\nVmRSS:\t    4000 kB\n";
        assert_eq!(parse_status_kib(text, "VmHWM"), Some(4321));
        assert_eq!(parse_status_kib(text, "VmRSS"), Some(4000));
        assert_eq!(parse_status_kib(text, "VmSwap"), None);
    }

    #[test]
    fn schedstat_first_field() {
        use super::parse_schedstat;
        assert_eq!(
            parse_schedstat("185591847 8102685 373\n"),
            Some(185_591_847)
        );
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn stat_counts_from_the_last_parenthesis() {
        use super::{parse_stat, StatTimes};
        let text = "42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 5 1 20 0 1 0 100 0 0";
        assert_eq!(
            parse_stat(text),
            Some(StatTimes {
                utime: 7,
                stime: 3,
                cutime: 5,
                cstime: 1
            })
        );
        assert_eq!(parse_stat("42 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        use super::sample;
        let s = sample(std::process::id());
        assert!(s.peak_rss.unwrap() > 0);
        assert!(s.stat.is_some());
    }
}
