//! What every benchmark reports with: percentiles, the runtime's thread
//! count, table cells, and the JSON-lines results file.

use std::io::Write as _;
use std::path::Path;

/// The value at index round((n-1)p) of `sorted` nanoseconds, in
/// microseconds (0 when empty). Felix's demos take the same index, so
/// figures compare like for like.
pub(crate) fn percentile(sorted: &[u128], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Worker threads of the runtime this runs on (an embedded broker shares
/// them).
pub(crate) fn runtime_threads() -> usize {
    tokio::runtime::Handle::current().metrics().num_workers()
}

/// `{:>W.1}` of an optional figure, `-` when absent.
pub(crate) fn opt_col(v: Option<f64>, width: usize) -> String {
    v.map_or_else(|| format!("{:>width$}", "-"), |v| format!("{v:>width$.1}"))
}

/// Microseconds of broker CPU per message: the CPU time a spawned broker
/// used between two readings, over the messages it handled meanwhile.
pub(crate) fn cpu_us_per(
    before: Option<std::time::Duration>,
    after: Option<std::time::Duration>,
    messages: u64,
) -> Option<f64> {
    let used = after?.checked_sub(before?)?;
    (messages > 0).then(|| used.as_secs_f64() * 1e6 / messages as f64)
}

/// The file each run appends its figures to, one JSON object a line
/// (`--results`; `scripts/bench-report` takes medians over them).
#[derive(Debug)]
pub(crate) struct Results(std::fs::File);

impl Results {
    /// Opens `path` for appending, creating it if needed.
    pub(crate) fn open(path: &Path) -> Result<Results, String> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(Results)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Appends one run's figures. A failed write loses that line only:
    /// the table on standard output still has the figures.
    pub(crate) fn append(&mut self, report: &impl serde::Serialize) {
        let line = serde_json::to_string(report).unwrap_or_default();
        let _ = writeln!(self.0, "{line}");
    }
}

/// A benchmark's figures on standard output: a table (a header, a row a
/// run), or with `--json` one JSON object a line instead, the same object
/// `--results` appends, so a script can read them without a file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table {
    json: bool,
}

impl Table {
    /// A table, or JSON lines when `json`.
    pub(crate) fn new(json: bool) -> Table {
        Table { json }
    }

    /// The table's header; nothing in JSON.
    pub(crate) fn header(&self, line: std::fmt::Arguments<'_>) {
        if !self.json {
            println!("{line}");
        }
    }

    /// One run: its table row, or its JSON line.
    pub(crate) fn row(&self, record: &impl serde::Serialize, line: std::fmt::Arguments<'_>) {
        if self.json {
            println!("{}", serde_json::to_string(record).unwrap_or_default());
        } else {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_rounded_indices() {
        let v: Vec<u128> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 501.0); // round(999 * 0.5) = 500 -> 501 us
        assert_eq!(percentile(&v, 0.99), 990.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn optional_columns_keep_their_width() {
        assert_eq!(opt_col(Some(12.345), 7), "   12.3");
        assert_eq!(opt_col(None, 7), "      -");
    }

    #[test]
    fn results_are_appended_one_line_a_run() {
        let path = std::env::temp_dir().join(format!("felix-bench-results-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        for n in [1, 2] {
            let mut r = Results::open(&path).expect("open");
            r.append(&serde_json::json!({ "run": n }));
        }
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "{\"run\":1}\n{\"run\":2}\n");
        let _ = std::fs::remove_file(&path);
    }
}
