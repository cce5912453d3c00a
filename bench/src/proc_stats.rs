//! A server process's resource use as Linux reports it in /proc: CPU time (user + system, all
//! threads) and peak resident memory (VmHWM). Parsing is separate from reading, for tests.

use std::path::Path;

/// CPU time and peak memory of one process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub cpu_us: u64,
    pub peak_rss_kib: u64,
}

/// Clock ticks per second of /proc/PID/stat's time fields.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// utime + stime, in clock ticks, from the text of /proc/PID/stat. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from the last ')'.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// VmHWM in KiB from the text of /proc/PID/status.
pub fn parse_peak_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// The usage of process `pid` now.
pub fn usage(pid: u32) -> std::io::Result<Usage> {
    let dir = Path::new("/proc").join(pid.to_string());
    let invalid = |what| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let stat = std::fs::read_to_string(dir.join("stat"))?;
    let ticks = parse_stat_ticks(&stat).ok_or_else(|| invalid("unparsable /proc/PID/stat"))?;
    let status = std::fs::read_to_string(dir.join("status"))?;
    let peak =
        parse_peak_rss_kib(&status).ok_or_else(|| invalid("no VmHWM in /proc/PID/status"))?;
    Ok(Usage {
        cpu_us: ticks * 1_000_000 / ticks_per_second(),
        peak_rss_kib: peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let stat =
            "1234 (java (main) x) S 1 1234 1234 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 30 0";
        assert_eq!(parse_stat_ticks(stat), Some(175));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn peak_rss_from_status() {
        let status = "Name:\tzinc\nVmPeak:\t  900 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_peak_rss_kib(status), Some(12_345));
        assert_eq!(parse_peak_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let usage = usage(std::process::id()).expect("own /proc entry");
        assert!(usage.peak_rss_kib > 0);
    }
}
