//! Reports: a human summary, a JSON document, JUnit XML and one
//! self-contained HTML page.
//!
//! The JSON report (`--format json`) is one object:
//! `{"tool", "version", "run": {"mode", "testee", "testee_announced",
//! "target", "vectors", "timestamp", "strict"}, "summary": {"total", "passed", "failed",
//! "expected_failures", "unexpected_passes", "warnings", "unsupported"},
//! "cases": [{"id", "level", "verdict", "detail"?, "millis", "description"?}]}` with
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

    /// Whether the run passes: no required failure, no unexpected pass,
    /// and at least one pass (a run where nothing passed proves nothing,
    /// e.g. a testee that answers `unsupported` to everything). `strict`
    /// also fails it on unsupported cases and recommended failures.
    pub fn ok(&self, strict: bool) -> bool {
        self.failed == 0
            && self.unexpected_passes == 0
            && self.passed > 0
            && !(strict && (self.unsupported > 0 || self.warnings > 0))
    }
}

/// What a report says about the run beside its cases.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunInfo {
    /// The mode: `vectors`, `codec`, `broker`, `client` or `default`.
    pub mode: String,
    /// The testee command line (`codec`, `client`), if any.
    pub testee: Option<String>,
    /// What the testee announced in `hello`.
    pub testee_announced: Option<String>,
    /// The broker address under test, if any.
    pub target: Option<String>,
    /// Where the vectors came from, if any were run.
    pub vectors: Option<String>,
    /// Start of the run, RFC 3339 UTC.
    pub timestamp: String,
    /// Whether `--strict` was given.
    pub strict: bool,
}

/// `now` as RFC 3339 UTC (`2026-12-03T03:20:17Z`), without a date crate.
pub fn rfc3339(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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

/// One finished case for the human report, printed as it finishes: the
/// verdict, the id, and the detail indented below.
pub fn human_case(r: &CaseResult) -> String {
    let mut out = String::new();
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
    out
}

/// Whether `--quiet` hides a case: passes, unsupported and not applicable.
pub fn quiet_hides(v: Verdict) -> bool {
    matches!(v, Verdict::Pass | Verdict::Unsupported | Verdict::Skipped)
}

/// The human report's totals (the cases were printed as they finished).
/// The last line is always `N passed, M failed`.
pub fn human_totals(results: &[CaseResult]) -> String {
    let mut out = String::new();
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
pub fn json(results: &[CaseResult], info: &RunInfo) -> String {
    let v = serde_json::json!({
        "tool": "felix-conformance",
        "version": env!("CARGO_PKG_VERSION"),
        "run": info,
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
                    // CI systems show `message` in their summaries: the
                    // reason's first line goes there, all of it in the body.
                    let first = c
                        .detail
                        .as_deref()
                        .unwrap_or("")
                        .lines()
                        .next()
                        .unwrap_or("");
                    let _ = write!(
                        out,
                        ">\n      <failure message=\"{}: {}\">{detail}</failure>\n    </testcase>\n",
                        tag(c.verdict),
                        xml_escape(first)
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

/// One self-contained HTML page (no scripts, no external resources), in
/// the manner of Autobahn's report: the run, the totals, then every case
/// with failures first and their detail shown, not folded away, so a
/// screenshot or a printout of a failing run carries the reasons.
pub fn html(results: &[CaseResult], info: &RunInfo) -> String {
    let s = Summary::of(results);
    let ok = s.ok(info.strict);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>felix-conformance: {} passed, {} failed</title>\n<style>\n\
body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}}\n\
h1{{font-size:1.4em;margin:0 0 .3em}} table{{border-collapse:collapse;margin:.8em 0}}\n\
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}}\n\
th{{background:#f3f3f3}} .verdict{{font-weight:bold;white-space:nowrap}}\n\
.pass .verdict{{color:#17702a}} .fail .verdict,.unexpected_pass .verdict{{color:#fff;background:#c0262d}}\n\
.warn .verdict{{color:#8a5a00;background:#fff1c2}} .expected_fail .verdict{{color:#555;background:#eee}}\n\
.unsupported .verdict,.skipped .verdict{{color:#666}}\n\
pre{{margin:0;white-space:pre-wrap;word-break:break-all;font:12px/1.35 ui-monospace,monospace}}\n\
.banner{{padding:.5em .8em;font-weight:bold;color:#fff;display:inline-block}} .ok{{background:#17702a}} .bad{{background:#c0262d}}\n\
</style></head><body>\n<h1>felix-conformance {}</h1>\n",
        s.passed,
        s.failed + s.unexpected_passes,
        html_escape(env!("CARGO_PKG_VERSION"))
    );
    let _ = writeln!(
        out,
        "<p class=\"banner {}\">{}: {} passed, {} failed</p>",
        if ok { "ok" } else { "bad" },
        if ok { "PASSED" } else { "FAILED" },
        s.passed,
        s.failed + s.unexpected_passes
    );
    out.push_str("<table class=\"run\">\n");
    let rows = [
        ("mode", Some(info.mode.clone())),
        ("testee", info.testee.clone()),
        ("testee announced", info.testee_announced.clone()),
        ("target", info.target.clone()),
        ("vectors", info.vectors.clone()),
        ("started", Some(info.timestamp.clone())),
        ("strict", Some(info.strict.to_string())),
    ];
    for (k, v) in rows {
        if let Some(v) = v {
            let _ = writeln!(out, "<tr><th>{k}</th><td>{}</td></tr>", html_escape(&v));
        }
    }
    let _ = writeln!(
        out,
        "</table>\n<table class=\"totals\"><tr><th>total</th><th>passed</th><th>failed</th><th>expected failures</th><th>unexpected passes</th><th>warnings</th><th>skipped</th><th>unsupported</th></tr>\n<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        s.total, s.passed, s.failed, s.expected_failures, s.unexpected_passes, s.warnings, s.skipped, s.unsupported
    );
    // Failures first, then warnings, then the rest, each in run order.
    let rank = |v: Verdict| match v {
        Verdict::Fail | Verdict::UnexpectedPass => 0,
        Verdict::Warn => 1,
        Verdict::ExpectedFail | Verdict::Unsupported | Verdict::Skipped => 2,
        Verdict::Pass => 3,
    };
    let mut ordered: Vec<&CaseResult> = results.iter().collect();
    ordered.sort_by_key(|r| rank(r.verdict));
    out.push_str("<table class=\"cases\">\n<tr><th>verdict</th><th>case</th><th>level</th><th>ms</th><th>detail</th></tr>\n");
    for r in ordered {
        let class = serde_json::to_value(r.verdict)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let level = match r.level {
            Level::Required => "required",
            Level::Recommended => "recommended",
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\" id=\"{}\"><td class=\"verdict\">{}</td><td><code>{}</code><br><small>{}</small></td><td>{level}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            html_escape(&r.id),
            tag(r.verdict),
            html_escape(&r.id),
            html_escape(&r.description),
            r.millis,
            html_escape(r.detail.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
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
            description: String::new(),
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
        assert!(
            xml.contains("<failure message=\"FAIL: got &lt;nothing&gt;"),
            "the reason is in message=: {xml}"
        );
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
        assert!(s.ok(false));
        assert!(!s.ok(true), "strict fails on a recommended failure");
        let s = Summary::of(&[result("a", Verdict::UnexpectedPass, None)]);
        assert!(!s.ok(false));
        let s = Summary::of(&[result("a", Verdict::Unsupported, Some("no"))]);
        assert!(!s.ok(false), "a run where nothing passed never passes");
        let s = Summary::of(&[
            result("a", Verdict::Pass, None),
            result("b", Verdict::Unsupported, Some("no")),
        ]);
        assert!(s.ok(false) && !s.ok(true), "strict fails on unsupported");
    }

    #[test]
    fn rfc3339_is_utc_civil_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_268_017);
        assert_eq!(rfc3339(t), "2026-12-03T03:20:17Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn html_is_self_contained_and_shows_failures_first() {
        let page = html(
            &[
                result("vectors/a", Verdict::Pass, None),
                result(
                    "vectors/b",
                    Verdict::Fail,
                    Some("first differing byte at offset 12 <x>"),
                ),
            ],
            &RunInfo {
                mode: "codec".into(),
                testee: Some("python3 t.py".into()),
                ..RunInfo::default()
            },
        );
        assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
        assert!(
            !page.contains("<script") && !page.contains("http"),
            "no external resources"
        );
        let fail = page.find("vectors/b").expect("failure listed");
        assert!(
            fail < page.find("vectors/a").expect("pass listed"),
            "failures first"
        );
        assert!(page.contains("offset 12 &lt;x&gt;") && page.contains("python3 t.py"));
    }
}
