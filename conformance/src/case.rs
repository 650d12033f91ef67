//! Cases, outcomes and the rules that turn them into a verdict.
//!
//! Every case has a stable hierarchical id (`vectors/json/cache_put/ttl_null`,
//! `broker/pubsub/fanout`) and a level. Required cases decide the exit
//! code; recommended ones (our improvements over Felix, such as an error
//! frame before a stream ends) are reported but never fail the run. A case
//! listed in the expected-failures file may fail without failing the run,
//! and fails the run if it passes, so the list never goes stale silently.

use std::collections::BTreeSet;
use std::time::Duration;

/// How much a case matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Felix-wire v1 as deployed: a failure fails the run.
    Required,
    /// Better than Felix: reported, never fails the run.
    Recommended,
}

/// What running a case gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Behaved as specified.
    Pass,
    /// Did not; the text says how.
    Fail(String),
    /// The testee said it does not implement this.
    Unsupported(String),
    /// Did not finish in time.
    Timeout(Duration),
    /// Not applicable to this peer (it never promised the behaviour, e.g.
    /// offsets on live batches); the text says why and how to enable it.
    Skipped(String),
}

/// The verdict on one case after levels and expected failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Passed.
    Pass,
    /// Failed (required: fails the run).
    Fail,
    /// Failed, but listed as an expected failure.
    ExpectedFail,
    /// Listed as an expected failure but passed: fails the run.
    UnexpectedPass,
    /// Recommended case that failed: reported only.
    Warn,
    /// The testee does not implement it: counted apart, not a pass.
    Unsupported,
    /// Not applicable to this peer: counted apart, not a pass.
    Skipped,
}

/// One finished case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    /// Stable id.
    pub id: String,
    /// Level.
    pub level: Level,
    /// Verdict.
    pub verdict: Verdict,
    /// Why, for anything but a pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Wall time.
    pub millis: u64,
    /// What the case checks (a vector's comment, a live case's line);
    /// filled in by the runner for the reports.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// The expected-failures list: one case id per line, `#` comments.
#[derive(Debug, Clone, Default)]
pub struct ExpectedFailures(BTreeSet<String>);

impl ExpectedFailures {
    /// Reads the list.
    pub fn parse(text: &str) -> Self {
        ExpectedFailures(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Whether `id` is listed.
    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }

    /// Listed ids that no case had (typos, removed cases).
    pub fn unknown<'a>(
        &'a self,
        ran: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = &'a String> + 'a {
        self.0.iter().filter(move |id| !ran.contains(*id))
    }
}

/// Applies level and expected failures to an outcome.
pub fn verdict(level: Level, outcome: &Outcome, expected_fail: bool) -> (Verdict, Option<String>) {
    let detail = match outcome {
        Outcome::Pass => None,
        Outcome::Fail(d) | Outcome::Unsupported(d) | Outcome::Skipped(d) => Some(d.clone()),
        Outcome::Timeout(t) => Some(format!("timed out after {} ms", t.as_millis())),
    };
    let v = match (outcome, expected_fail, level) {
        (Outcome::Unsupported(_), _, _) => Verdict::Unsupported,
        (Outcome::Skipped(_), _, _) => Verdict::Skipped,
        (Outcome::Pass, true, _) => Verdict::UnexpectedPass,
        (Outcome::Pass, false, _) => Verdict::Pass,
        (_, true, _) => Verdict::ExpectedFail,
        (_, false, Level::Recommended) => Verdict::Warn,
        (_, false, Level::Required) => Verdict::Fail,
    };
    let detail = match v {
        Verdict::UnexpectedPass => {
            Some("listed as an expected failure, but passed: remove it from the list".into())
        }
        _ => detail,
    };
    (v, detail)
}

/// Whether `id` is selected by the filters (prefixes; none selects all).
pub fn selected(id: &str, filters: &[String]) -> bool {
    filters.is_empty() || filters.iter().any(|f| id.starts_with(f.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_failures_never_go_stale() {
        let xf = ExpectedFailures::parse("# known\nbroker/a   # flaky peer\n\nbroker/b\n");
        assert!(xf.contains("broker/a") && xf.contains("broker/b"));
        assert_eq!(
            verdict(Level::Required, &Outcome::Fail("x".into()), true).0,
            Verdict::ExpectedFail
        );
        assert_eq!(
            verdict(Level::Required, &Outcome::Pass, true).0,
            Verdict::UnexpectedPass
        );
        assert_eq!(
            verdict(Level::Required, &Outcome::Fail("x".into()), false).0,
            Verdict::Fail
        );
        assert_eq!(
            verdict(Level::Recommended, &Outcome::Fail("x".into()), false).0,
            Verdict::Warn
        );
        assert_eq!(
            verdict(Level::Required, &Outcome::Unsupported("no".into()), false).0,
            Verdict::Unsupported
        );
        assert_eq!(
            verdict(Level::Required, &Outcome::Skipped("n/a".into()), true),
            (Verdict::Skipped, Some("n/a".into())),
            "a skipped case neither fails nor counts as an expected failure"
        );
        let ran: BTreeSet<String> = ["broker/a".to_string()].into();
        assert_eq!(xf.unknown(&ran).collect::<Vec<_>>(), ["broker/b"]);
    }

    #[test]
    fn filters_are_prefixes() {
        assert!(selected("broker/pubsub/fanout", &[]));
        assert!(selected("broker/pubsub/fanout", &["broker/pub".into()]));
        assert!(!selected("vectors/json/ok/basic", &["broker/".into()]));
    }
}
