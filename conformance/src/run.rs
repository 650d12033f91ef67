//! Running selected cases and turning outcomes into results.

use std::time::{Duration, Instant};

use crate::case::{self, CaseResult, ExpectedFailures, Level, Outcome};
use crate::live::cluster::{self, ClusterConfig, ClusterCtx};
use crate::live::{self, CaseError, Ctx, LiveConfig};

/// Options every mode shares.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Case id prefixes; empty selects everything.
    pub filters: Vec<String>,
    /// Expected failures.
    pub expected: ExpectedFailures,
}

impl Selection {
    /// Whether a case id is selected.
    pub fn selected(&self, id: &str) -> bool {
        case::selected(id, &self.filters)
    }

    /// A finished case.
    pub fn result(&self, id: String, level: Level, outcome: Outcome, took: Duration) -> CaseResult {
        let (verdict, detail) = case::verdict(level, &outcome, self.expected.contains(&id));
        CaseResult {
            id,
            level,
            verdict,
            detail,
            millis: took.as_millis() as u64,
            description: String::new(),
        }
    }
}

/// A case's outcome, or its timeout.
fn outcome(
    result: Result<Result<(), CaseError>, tokio::time::error::Elapsed>,
    case_timeout: Duration,
) -> Outcome {
    match result {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(CaseError::Fail(why))) => Outcome::Fail(why),
        Ok(Err(CaseError::Skip(why))) => Outcome::Skipped(why),
        Ok(Err(CaseError::Unsupported(why))) => Outcome::Unsupported(why),
        Err(_) => Outcome::Timeout(case_timeout),
    }
}

/// Runs the live suite in the order of [`live::all`] (destructive cases
/// last); `progress` is told about each finished case.
pub async fn live_suite(
    cfg: LiveConfig,
    case_timeout: Duration,
    sel: &Selection,
    progress: impl FnMut(&CaseResult),
) -> Vec<CaseResult> {
    let cases = live::all().into_iter().map(|c| (c.id, c.level, c.run));
    run_cases(&Ctx::new(cfg), cases, case_timeout, sel, progress).await
}

/// Runs the cross-node cases of [`cluster::all`] across `cfg.nodes`;
/// `progress` is told about each finished case.
pub async fn cluster_suite(
    cfg: ClusterConfig,
    case_timeout: Duration,
    sel: &Selection,
    progress: impl FnMut(&CaseResult),
) -> Vec<CaseResult> {
    let cases = cluster::all().into_iter().map(|c| (c.id, c.level, c.run));
    run_cases(&ClusterCtx::new(cfg), cases, case_timeout, sel, progress).await
}

/// Runs the selected `cases` (id, level, check) against `ctx` in order,
/// each within `case_timeout`.
async fn run_cases<C>(
    ctx: &C,
    cases: impl IntoIterator<
        Item = (
            &'static str,
            Level,
            for<'a> fn(&'a C) -> live::CaseFuture<'a>,
        ),
    >,
    case_timeout: Duration,
    sel: &Selection,
    mut progress: impl FnMut(&CaseResult),
) -> Vec<CaseResult> {
    let mut out = Vec::new();
    for (id, level, run) in cases {
        if !sel.selected(id) {
            continue;
        }
        let t0 = Instant::now();
        let outcome = outcome(
            tokio::time::timeout(case_timeout, run(ctx)).await,
            case_timeout,
        );
        let r = sel.result(id.to_string(), level, outcome, t0.elapsed());
        progress(&r);
        out.push(r);
    }
    out
}
