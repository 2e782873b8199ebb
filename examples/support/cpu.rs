//! CPU accounting from /proc for the benchmarks (examples/loadgen.rs, examples/watchbench.rs):
//! how much CPU a process used, and how busy the whole machine was meanwhile, so that a figure
//! measured beside someone else's compiler can be told apart.

// Each benchmark uses its part of this file.
#![allow(dead_code)]

use anyhow::{Context, Result};

/// Kernel clock ticks per second in /proc/PID/stat (USER_HZ, 100 on every Linux target).
const CLOCK_TICKS: f64 = 100.0;

/// User plus system CPU seconds of a process (`self` for this one), all its threads.
pub fn cpu_secs(pid: &str) -> Result<f64> {
    Ok(cpu_times(pid)?.0)
}

/// CPU seconds of a process and of its children that it has waited for (a server's tasks).
pub fn cpu_times(pid: &str) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may itself hold spaces and parentheses.
    let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<u64>()? as f64)
    };
    // utime, stime, cutime and cstime are fields 14 to 17; `rest` starts at field 3.
    Ok((
        (ticks(11)? + ticks(12)?) / CLOCK_TICKS,
        (ticks(13)? + ticks(14)?) / CLOCK_TICKS,
    ))
}

/// Machine-wide CPU ticks from the first line of /proc/stat: (busy, total), all cores.
#[derive(Debug, Clone, Copy)]
pub struct MachineCpu(u64, u64);

impl MachineCpu {
    pub fn now() -> MachineCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal; guest time is already in user.
        let total = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        MachineCpu(total - idle, total)
    }

    /// Busy CPU seconds (all cores, all processes) since `self`, and the seconds all the
    /// cores had in that time.
    pub fn busy_since(&self) -> (f64, f64) {
        let now = MachineCpu::now();
        let busy = now.0.saturating_sub(self.0) as f64;
        let total = now.1.saturating_sub(self.1) as f64;
        (busy / CLOCK_TICKS, total / CLOCK_TICKS)
    }

    /// The share of all the cores' time since `self` that was busy beyond `ours` CPU seconds;
    /// `None` when too little time passed for the kernel's 10 ms ticks to tell.
    pub fn others_pct_since(&self, ours: f64) -> Option<f64> {
        let (busy, total) = self.busy_since();
        (total >= 1.0).then(|| (busy - ours).max(0.0) * 100.0 / total)
    }

    pub fn busy_pct_since(&self) -> f64 {
        let (busy, total) = self.busy_since();
        if total > 0.0 {
            busy * 100.0 / total
        } else {
            f64::NAN
        }
    }
}
