//! What /proc says about a server process: resident memory, threads, CPU time.

use super::net;
use std::io;

/// What /proc says about a process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcStats {
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Threads.
    pub threads: u64,
    /// User + system CPU time, seconds.
    pub cpu_secs: f64,
}

/// Reads /proc/PID/status and /proc/PID/stat.
pub fn read_proc(pid: u32) -> io::Result<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(parse_proc(&status, &stat, net::clock_ticks()))
}

/// Parses /proc/PID/status (VmRSS, Threads) and /proc/PID/stat (utime, stime).
pub fn parse_proc(status: &str, stat: &str, ticks_per_sec: u64) -> ProcStats {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3, utime field 14, stime field 15.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let nums: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| nums.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = tick(11) + tick(12);
    ProcStats {
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
        cpu_secs: ticks as f64 / ticks_per_sec.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        let status = "Name:\tlanchat-server\nVmRSS:\t  12345 kB\nThreads:\t42\n";
        let stat = "1234 (lanchat (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0";
        let s = parse_proc(status, stat, 100);
        assert_eq!(s.rss_kib, 12345);
        assert_eq!(s.threads, 42);
        assert!((s.cpu_secs - 3.0).abs() < 1e-9, "{s:?}");
    }
}
