//! Reports: a human summary, a JSON document and JUnit XML.
//!
//! The JSON report (`--format json`) is one object:
//! `{"tool", "version", "summary": {"total", "passed", "failed",
//! "expected_failures", "unexpected_passes", "warnings", "unsupported"},
//! "cases": [{"id", "level", "verdict", "detail"?, "millis"}]}` with
//! verdicts `pass`, `fail`, `expected_fail`, `unexpected_pass`, `warn`,
//! `unsupported`, `skipped`.

use std::fmt::Write as _;

use crate::case::{CaseResult, Level, Verdict};

/// Counts by verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Cases run.
    pub total: usize,
    /// Passed.
    pub passed: usize,
    /// Failed required cases.
    pub failed: usize,
    /// Listed failures that failed.
    pub expected_failures: usize,
    /// Listed failures that passed.
    pub unexpected_passes: usize,
    /// Failed recommended cases.
    pub warnings: usize,
    /// Answered "unsupported".
    pub unsupported: usize,
    /// Not applicable to this peer.
    pub skipped: usize,
}

impl Summary {
    /// Counts `results`.
    pub fn of(results: &[CaseResult]) -> Summary {
        let mut s = Summary {
            total: results.len(),
            ..Summary::default()
        };
        for r in results {
            match r.verdict {
                Verdict::Pass => s.passed += 1,
                Verdict::Fail => s.failed += 1,
                Verdict::ExpectedFail => s.expected_failures += 1,
                Verdict::UnexpectedPass => s.unexpected_passes += 1,
                Verdict::Warn => s.warnings += 1,
                Verdict::Unsupported => s.unsupported += 1,
                Verdict::Skipped => s.skipped += 1,
            }
        }
        s
    }

    /// Whether the run passes: no required failure, no unexpected pass.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.unexpected_passes == 0
    }
}

fn tag(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::ExpectedFail => "XFAIL",
        Verdict::UnexpectedPass => "XPASS",
        Verdict::Warn => "WARN",
        Verdict::Unsupported => "UNSUP",
        Verdict::Skipped => "SKIP",
    }
}

/// The human report: every non-pass case with its reason, then the totals.
pub fn human(results: &[CaseResult], verbose: bool) -> String {
    let mut out = String::new();
    for r in results {
        if r.verdict != Verdict::Pass || verbose {
            let level = if r.level == Level::Recommended {
                " (recommended)"
            } else {
                ""
            };
            let _ = writeln!(out, "{:5} {}{level}", tag(r.verdict), r.id);
            if let Some(d) = &r.detail {
                for line in d.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    let s = Summary::of(results);
    let _ = writeln!(
        out,
        "{} cases: {} passed, {} failed, {} expected failures, {} unexpected passes, {} warnings (recommended), {} skipped (not applicable), {} unsupported",
        s.total, s.passed, s.failed, s.expected_failures, s.unexpected_passes, s.warnings, s.skipped, s.unsupported
    );
    let _ = writeln!(
        out,
        "{} passed, {} failed",
        s.passed,
        s.failed + s.unexpected_passes
    );
    out
}

/// The JSON report.
pub fn json(results: &[CaseResult]) -> String {
    let v = serde_json::json!({
        "tool": "felix-conformance",
        "version": env!("CARGO_PKG_VERSION"),
        "summary": Summary::of(results),
        "cases": results,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one `<testsuite>` per top-level id segment, one `<testcase>`
/// per case (class name = the id's parent path, name = its last segment).
pub fn junit(results: &[CaseResult]) -> String {
    let mut suites: Vec<(&str, Vec<&CaseResult>)> = Vec::new();
    for r in results {
        let top = r.id.split('/').next().unwrap_or("cases");
        match suites.iter_mut().find(|(t, _)| *t == top) {
            Some((_, list)) => list.push(r),
            None => suites.push((top, vec![r])),
        }
    }
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"felix-conformance\">\n",
    );
    for (name, cases) in suites {
        let failures = cases
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Fail | Verdict::UnexpectedPass))
            .count();
        let skipped = cases
            .iter()
            .filter(|c| {
                matches!(
                    c.verdict,
                    Verdict::Unsupported | Verdict::ExpectedFail | Verdict::Warn | Verdict::Skipped
                )
            })
            .count();
        let time: u64 = cases.iter().map(|c| c.millis).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\">",
            xml_escape(name),
            cases.len(),
            time as f64 / 1000.0
        );
        for c in cases {
            let (class, test) = c.id.rsplit_once('/').unwrap_or(("", c.id.as_str()));
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(&class.replace('/', ".")),
                xml_escape(test),
                c.millis as f64 / 1000.0
            );
            let detail = xml_escape(c.detail.as_deref().unwrap_or(""));
            match c.verdict {
                Verdict::Pass => out.push_str("/>\n"),
                Verdict::Fail | Verdict::UnexpectedPass => {
                    let _ = write!(
                        out,
                        ">\n      <failure message=\"{}\">{detail}</failure>\n    </testcase>\n",
                        tag(c.verdict)
                    );
                }
                _ => {
                    let _ = write!(
                        out,
                        ">\n      <skipped message=\"{}: {detail}\"/>\n    </testcase>\n",
                        tag(c.verdict)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, verdict: Verdict, detail: Option<&str>) -> CaseResult {
        CaseResult {
            id: id.into(),
            level: Level::Required,
            verdict,
            detail: detail.map(str::to_owned),
            millis: 3,
        }
    }

    #[test]
    fn junit_is_well_formed_and_escaped() {
        let xml = junit(&[
            result("vectors/json/ok/basic", Verdict::Pass, None),
            result(
                "broker/pubsub/fanout",
                Verdict::Fail,
                Some("got <nothing> & \"more\"\u{1}"),
            ),
            result("broker/x/y", Verdict::Unsupported, Some("no")),
        ]);
        assert!(xml.contains(
            "<testsuite name=\"broker\" tests=\"2\" failures=\"1\" errors=\"0\" skipped=\"1\""
        ));
        assert!(xml.contains("got &lt;nothing&gt; &amp; &quot;more&quot;\\u0001"));
        assert!(xml.contains("classname=\"broker.pubsub\" name=\"fanout\""));
        assert_eq!(xml.matches("<testcase").count(), 3);
        assert_eq!(
            xml.matches("<testsuite ").count(),
            xml.matches("</testsuite>").count()
        );
    }

    #[test]
    fn summary_decides_the_exit() {
        let s = Summary::of(&[
            result("a", Verdict::Pass, None),
            result("b", Verdict::Warn, Some("w")),
        ]);
        assert!(s.ok());
        let s = Summary::of(&[result("a", Verdict::UnexpectedPass, None)]);
        assert!(!s.ok());
    }
}
