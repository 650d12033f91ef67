//! `vectors` mode: every vector through this toolkit's own codec.

use std::path::Path;

use felix_wire::vectors::{self, VectorCase};

use crate::case::{Level, Outcome};

/// Loads the vectors; the error names the file at fault.
pub fn load(dir: &Path) -> Result<Vec<VectorCase>, String> {
    let cases = vectors::load_dir(dir).map_err(|e| e.to_string())?;
    if cases.is_empty() {
        return Err(format!("{}: no vector files found", dir.display()));
    }
    Ok(cases)
}

/// The case id of a vector.
pub fn case_id(case: &VectorCase) -> String {
    format!("vectors/{}", case.id)
}

/// Runs one vector through felix-wire.
pub fn run(case: &VectorCase) -> (String, Level, Outcome) {
    let outcome = match vectors::check(case) {
        Ok(()) => Outcome::Pass,
        Err(why) => Outcome::Fail(why),
    };
    (case_id(case), Level::Required, outcome)
}
