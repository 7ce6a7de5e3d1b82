//! What the operating system can tell about who used the CPU: the bench's own
//! CPU time (getrusage), a server process's CPU time and memory (/proc), the
//! open-file limit that caps how many connections the bench can hold, and the
//! machine the bench ran on, for its report.

use std::time::Duration;

/// User plus system CPU time of this process so far.
pub fn own_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes a whole `rusage` into the pointer it is given,
        // and reports failure through its return value, which is checked.
        let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        if status != 0 {
            return None;
        }
        // SAFETY: getrusage returned 0, so it initialised the struct.
        let usage = unsafe { usage.assume_init() };
        let micros = |time: libc::timeval| {
            (time.tv_sec as u64).saturating_mul(1_000_000) + time.tv_usec as u64
        };
        Some(Duration::from_micros(
            micros(usage.ru_utime) + micros(usage.ru_stime),
        ))
    }
    #[cfg(not(unix))]
    None
}

/// User plus system CPU time of process `pid` so far, from `/proc/PID/stat`.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_time_from_stat(&stat, clock_ticks_per_second())
}

/// Resident memory of process `pid`, from `VmRSS` in `/proc/PID/status`.
pub fn process_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    rss_from_status(&status)
}

/// Raises this process's soft open-file limit to its hard limit: each connection
/// is a file descriptor, and the usual soft limit of 1024 is far below a bench.
/// Returns the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write the struct they are given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        // `rlim_t` is u64 on Linux but not on every Unix.
        #[allow(clippy::unnecessary_cast)]
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// The machine a run was measured on, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// The distribution's name (`PRETTY_NAME` of /etc/os-release) or the OS family.
    pub os: String,
    /// Kernel release, where the OS tells.
    pub kernel: Option<String>,
    /// CPU model, where the OS tells.
    pub cpu: Option<String>,
}

impl Machine {
    pub fn this_one() -> Self {
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|release| os_release_name(&release))
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        Self {
            cores: std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            os: format!("{os} ({})", std::env::consts::ARCH),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|release| release.trim().to_owned()),
            cpu: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|info| cpu_model(&info)),
        }
    }
}

fn os_release_name(release: &str) -> Option<String> {
    let line = release
        .lines()
        .find(|line| line.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim_matches('"').to_owned())
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    let line = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_owned())
}

fn clock_ticks_per_second() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks > 0 {
            return ticks as u64;
        }
    }
    100
}

/// `utime` and `stime` are fields 14 and 15 of `/proc/PID/stat`. The command name
/// (field 2) is in parentheses and may itself hold spaces or parentheses, so
/// counting starts after the last `)`.
fn cpu_time_from_stat(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = user + system;
    Some(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / ticks_per_second.max(1),
    ))
}

fn rss_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat =
            "4242 (co dit) (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_time_from_stat(stat, 100), Some(Duration::from_secs(3)));
    }

    #[test]
    fn rss_is_read_in_kibibytes() {
        let status = "Name:\tcoedit\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(rss_from_status(status), Some(2 * 1024 * 1024));
    }

    #[test]
    fn the_machine_is_described_from_the_os_files() {
        let release = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            os_release_name(release).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert!(Machine::this_one().cores >= 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_measured_both_ways() {
        let pid = std::process::id();
        assert!(process_cpu_time(pid).is_some());
        assert!(process_rss_bytes(pid).unwrap() > 0);
        assert!(own_cpu_time().is_some());
    }
}
