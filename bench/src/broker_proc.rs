//! `--spawn-broker`: the `felix-broker` binary as a child process, on an
//! ephemeral port with a throwaway data directory, and its memory.
//!
//! The broker is started with `--bind 127.0.0.1:0`, so the kernel picks a
//! free port with no race; the address comes from the line the broker
//! prints once it is bound (`felix-broker listening on ADDR ...`). Its
//! self-signed certificate is `<data_dir>/tls/cert.pem`. While it runs, a
//! thread samples `VmRSS` from `/proc/<pid>/status` and keeps the maximum;
//! at the end `VmHWM` (the kernel's own peak) is read just before SIGTERM.
//! The two should agree to within the kernel's RSS counter slack (it
//! batches counter updates per CPU): `VmHWM` is the figure reported, the
//! sampled maximum is the cross-check (a sampler that missed a short peak
//! shows less).

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the broker gets to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGTERM'd broker gets to drain and exit before SIGKILL (its
/// own drain gives writers 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Interval between `VmRSS` samples.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// The broker's memory, in KiB as `/proc` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Rss {
    /// `VmHWM`: the kernel's peak resident set size.
    pub(crate) peak_kib: Option<u64>,
    /// The largest `VmRSS` sampled.
    pub(crate) sampled_max_kib: Option<u64>,
}

impl Rss {
    /// `VmHWM` in MiB.
    pub(crate) fn peak_mib(&self) -> Option<f64> {
        self.peak_kib.map(kib_to_mib)
    }

    /// The sampled `VmRSS` maximum in MiB.
    pub(crate) fn sampled_max_mib(&self) -> Option<f64> {
        self.sampled_max_kib.map(kib_to_mib)
    }
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat`
/// (`USER_HZ`: 100 on every architecture Linux runs on here).
const USER_HZ: u64 = 100;

/// User + system CPU time in the text of `/proc/<pid>/stat` (fields 14
/// and 15, counted after the parenthesised command name, which may itself
/// hold spaces and parentheses).
pub(crate) fn stat_cpu_time(stat: &str) -> Option<std::time::Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // state is field 3
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(std::time::Duration::from_millis(
        (utime + stime) * 1000 / USER_HZ,
    ))
}

/// Nanoseconds a thread has run, the first field of
/// `/proc/<pid>/task/<tid>/schedstat`.
pub(crate) fn schedstat_cpu_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// The value of `key` (e.g. `VmHWM`) in the text of `/proc/<pid>/status`,
/// in KiB: lines look like `VmHWM:\t  12345 kB`.
pub(crate) fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let value = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") | None => Some(value),
            Some(_) => None,
        }
    })
}

/// Reads `key` from `/proc/<pid>/status` (None off Linux, or once the
/// process is gone).
fn read_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib(&status, key)
}

/// The address in the broker's `felix-broker listening on ADDR (...)` line.
pub(crate) fn listening_addr(line: &str) -> Option<SocketAddr> {
    line.trim()
        .strip_prefix("felix-broker listening on ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `felix-broker` next to this executable (`cargo build` puts both in
/// `target/<profile>/`).
fn broker_binary() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("locating this executable: {e}"))?;
    let name = format!("felix-broker{}", std::env::consts::EXE_SUFFIX);
    let bin = me.with_file_name(name);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "--spawn-broker: {} not found; build it next to felix-bench with \
             `cargo build --release -p felix-broker` (or without --release for a debug felix-bench)",
            bin.display()
        ))
    }
}

/// Samples a process's `VmRSS` on a thread, keeping the maximum.
struct Sampler {
    stop: Arc<AtomicBool>,
    max_kib: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max_kib = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, max_kib) = (stop.clone(), max_kib.clone());
            std::thread::Builder::new()
                .name("broker-rss".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(kib) = read_status_kib(pid, "VmRSS") {
                            max_kib.fetch_max(kib, Ordering::Relaxed);
                        }
                        std::thread::sleep(SAMPLE_EVERY);
                    }
                })
                .ok()
        };
        Sampler {
            stop,
            max_kib,
            thread,
        }
    }

    fn max_kib(&self) -> Option<u64> {
        Some(self.max_kib.load(Ordering::Relaxed)).filter(|&k| k > 0)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running `felix-broker` child process. Dropping it without
/// [`SpawnedBroker::stop`] kills it (SIGKILL) and removes its directory.
pub(crate) struct SpawnedBroker {
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
    dir: PathBuf,
    sampler: Sampler,
}

impl std::fmt::Debug for SpawnedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnedBroker")
            .field("pid", &self.pid)
            .field("addr", &self.addr)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SpawnedBroker {
    /// Starts `felix-broker` on 127.0.0.1 (ephemeral port), dev auth, no
    /// metrics endpoint, a fresh data directory, plus `extra` flags, and
    /// waits until it is bound. `FELIX_*` variables of this process (meant
    /// for the CLI) are not passed on.
    pub(crate) fn start(extra: &[String]) -> Result<SpawnedBroker, String> {
        let bin = broker_binary()?;
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "felix-bench-broker-{}-{unique}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cmd = Command::new(&bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FELIX_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--metrics-bind", "off", "--auth", "dev", "--log", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let pid = child.id();
        // The banner and its hints come on standard output (logs go to
        // standard error): drain it for the whole run so the broker never
        // blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
        }
        let mut broker = SpawnedBroker {
            child: Some(child),
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            sampler: Sampler::start(pid),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        broker.addr = addr;
                        break;
                    }
                    seen.push(line);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => {
                    let status = broker
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    let why = match status {
                        Some(s) => format!("exited ({s})"),
                        None => format!("printed no address within {START_TIMEOUT:?}"),
                    };
                    return Err(format!(
                        "--spawn-broker: {} {why}; its output:\n{}",
                        bin.display(),
                        seen.join("\n")
                    ));
                }
            }
        }
        if !broker.cert_path().is_file() {
            return Err(format!(
                "--spawn-broker: the broker is up but wrote no certificate at {}",
                broker.cert_path().display()
            ));
        }
        Ok(broker)
    }

    /// Where it serves QUIC.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The self-signed certificate clients must trust.
    pub(crate) fn cert_path(&self) -> PathBuf {
        self.dir.join("tls").join("cert.pem")
    }

    /// Its memory so far: `VmHWM` now and the sampled `VmRSS` maximum.
    /// CPU time (user + system) the broker process has used so far (None
    /// off Linux). Differences over a run give the broker's CPU per
    /// delivered message, apart from the benchmark's own.
    /// Read from each thread's `schedstat` (nanoseconds; the broker's
    /// threads live as long as it does), else from `stat` (10 ms ticks: too
    /// coarse for a run of a few milliseconds).
    pub(crate) fn cpu_time(&self) -> Option<std::time::Duration> {
        let threads = std::fs::read_dir(format!("/proc/{}/task", self.pid)).ok();
        let from_schedstat = threads.and_then(|dir| {
            dir.map(|t| {
                let path = t.ok()?.path().join("schedstat");
                schedstat_cpu_ns(&std::fs::read_to_string(path).ok()?)
            })
            .sum::<Option<u64>>()
        });
        match from_schedstat {
            Some(ns) => Some(std::time::Duration::from_nanos(ns)),
            None => {
                stat_cpu_time(&std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?)
            }
        }
    }

    pub(crate) fn rss(&self) -> Rss {
        Rss {
            peak_kib: read_status_kib(self.pid, "VmHWM"),
            sampled_max_kib: self.sampler.max_kib(),
        }
    }

    /// Reads its memory (before it exits), sends SIGTERM, waits for the
    /// drain (SIGKILL after [`STOP_TIMEOUT`]) and removes its directory.
    /// Returns the memory figures and whether it exited cleanly.
    pub(crate) fn stop(mut self) -> (Rss, Result<(), String>) {
        // The sampler first, so VmHWM (read after) bounds every sample.
        self.sampler.stop();
        let rss = self.rss();
        let Some(mut child) = self.child.take() else {
            return (rss, Ok(()));
        };
        // No unsafe code here (so no libc::kill): the `kill` utility
        // sends the SIGTERM that starts the broker's graceful drain.
        let termed = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + if termed { STOP_TIMEOUT } else { Duration::ZERO };
        let outcome = loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => break Ok(()),
                Ok(Some(status)) => break Err(format!("the broker exited with {status}")),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(if termed {
                        format!(
                            "the broker did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed"
                        )
                    } else {
                        "could not send SIGTERM (no `kill` utility?); killed".into()
                    });
                }
                Err(e) => break Err(format!("waiting for the broker: {e}")),
            }
        };
        remove_dir(&self.dir);
        (rss, outcome)
    }
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

impl Drop for SpawnedBroker {
    fn drop(&mut self) {
        self.sampler.stop();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            remove_dir(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tfelix-broker\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t 1093372 kB\nVmSize:\t 1027836 kB\nVmLck:\t       0 kB\n\
        VmHWM:\t   45312 kB\nVmRSS:\t   40960 kB\nRssAnon:\t   30000 kB\nThreads:\t3\n";

    #[test]
    fn cpu_time_is_user_plus_system_after_the_command_name() {
        // A command name with a space and a ')' must not shift the fields.
        let stat = "4242 (felix (x) b) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 130 0 0 20 0 3 0";
        assert_eq!(
            stat_cpu_time(stat),
            Some(std::time::Duration::from_millis(3800))
        );
        assert_eq!(stat_cpu_time("garbage"), None);
        assert_eq!(schedstat_cpu_ns("1234567 890 12\n"), Some(1_234_567));
        assert_eq!(schedstat_cpu_ns(""), None);
    }

    #[test]
    fn status_values_are_read_in_kib() {
        assert_eq!(status_kib(STATUS, "VmHWM"), Some(45312));
        assert_eq!(status_kib(STATUS, "VmRSS"), Some(40960));
        assert_eq!(status_kib(STATUS, "VmPeak"), Some(1093372));
        assert_eq!(status_kib(STATUS, "Threads"), Some(3), "a bare count");
    }

    #[test]
    fn status_keys_match_whole_names_only() {
        // "VmRSS" must not match "VmRSSx", nor "Rss" match "RssAnon".
        assert_eq!(
            status_kib("VmRSSx:\t 5 kB\nVmRSS:\t 7 kB\n", "VmRSS"),
            Some(7)
        );
        assert_eq!(status_kib(STATUS, "Rss"), None);
        assert_eq!(status_kib(STATUS, "VmSwap"), None, "absent");
        assert_eq!(status_kib("VmHWM:\t lots kB\n", "VmHWM"), None);
        assert_eq!(status_kib("VmHWM:\t 5 MB\n", "VmHWM"), None, "unknown unit");
        assert_eq!(status_kib("", "VmHWM"), None);
    }

    #[test]
    fn peaks_convert_to_mib() {
        let rss = Rss {
            peak_kib: Some(45312),
            sampled_max_kib: None,
        };
        assert_eq!(rss.peak_mib(), Some(44.25));
        assert_eq!(rss.sampled_max_mib(), None);
    }

    #[test]
    fn this_process_has_a_peak_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = read_status_kib(std::process::id(), "VmHWM").expect("VmHWM");
            assert!(rss > 0);
        }
    }

    #[test]
    fn the_broker_banner_names_its_address() {
        let line = "felix-broker listening on 127.0.0.1:41234 (QUIC, felix-wire v1, auth Dev)";
        assert_eq!(
            listening_addr(line),
            Some("127.0.0.1:41234".parse().expect("literal"))
        );
        assert_eq!(
            listening_addr("felix-broker listening on [::1]:5000 (QUIC)"),
            Some("[::1]:5000".parse().expect("literal"))
        );
        assert_eq!(listening_addr("  trust this certificate: x"), None);
        assert_eq!(listening_addr("felix-broker listening on nowhere"), None);
    }
}
