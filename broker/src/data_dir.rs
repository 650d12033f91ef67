//! Checks the data directory once at start, so a path the broker cannot
//! use stops it at once with the path and the reason, instead of failing
//! later: the development certificate is written on first start, but the
//! replay rings only at shutdown, when an unwritable directory would lose
//! them.

use std::path::{Path, PathBuf};

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "data directory {path}: {why} (set --data-dir, FELIX_BROKER_DATA_DIR or data_dir to a directory this user may write)"
)]
pub struct DataDirError {
    /// The configured data directory.
    pub path: PathBuf,
    /// What is wrong, naming the path at fault when it is not `path`.
    pub why: String,
}

/// Creates `path` if missing (private to this user) and checks that the
/// broker can write in it.
pub fn check(path: &Path) -> Result<(), DataDirError> {
    let fail = |why: String| DataDirError {
        path: path.to_path_buf(),
        why,
    };
    if let Some(file) = path.ancestors().find(|p| p.is_file()) {
        return Err(fail(if file == path {
            "a file is in the way: it exists and is not a directory".into()
        } else {
            format!(
                "{} is a file, so no directory can be made below it",
                file.display()
            )
        }));
    }
    crate::persist::create_private_dir(path).map_err(|e| fail(format!("cannot create it: {e}")))?;
    // A directory can exist and still refuse files (read-only mount,
    // another user's directory): try one.
    let probe = path.join(format!(".felix-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| fail(format!("cannot write in it: {e}")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("felix-data-dir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn a_missing_directory_is_created_and_left_empty() {
        let root = scratch("create");
        let dir = root.join("a/b");
        check(&dir).expect("usable");
        assert!(dir.is_dir());
        assert_eq!(std::fs::read_dir(&dir).expect("list").count(), 0);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_file_in_the_way_is_named_with_the_reason() {
        let root = scratch("file");
        let file = root.join("data");
        std::fs::write(&file, "x").expect("file");
        let err = check(&file).expect_err("a file").to_string();
        assert!(
            err.starts_with(&format!(
                "data directory {}: a file is in the way",
                file.display()
            )),
            "{err}"
        );
        let below = file.join("rings");
        let err = check(&below).expect_err("below a file").to_string();
        assert!(
            err.contains(&format!(
                "{}: {} is a file, so no directory can be made below it",
                below.display(),
                file.display()
            )),
            "{err}"
        );
        assert!(err.contains("FELIX_BROKER_DATA_DIR"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
