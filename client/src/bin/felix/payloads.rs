//! What `felix pub` publishes: the arguments, files, all of standard
//! input as one message, or one message per line of standard input. Files
//! and `--stdin` are byte-exact (binary payloads); lines are for text.

use std::io::BufRead;
use std::path::PathBuf;

use felix_client::Bytes;

/// Where `pub`'s messages come from.
pub(crate) enum Source {
    /// Each argument is a message.
    Args(Vec<String>),
    /// Each file's bytes are a message.
    Files(Vec<PathBuf>),
    /// All of standard input is one message.
    Stdin,
    /// Each line of standard input is a message (without its line end).
    StdinLines,
}

impl Source {
    /// From `pub`'s arguments: `-` alone means all of standard input.
    pub(crate) fn from_args(messages: Vec<String>, files: Vec<PathBuf>, stdin: bool) -> Source {
        if stdin || messages == ["-"] {
            Source::Stdin
        } else if !files.is_empty() {
            Source::Files(files)
        } else if !messages.is_empty() {
            Source::Args(messages)
        } else {
            Source::StdinLines
        }
    }

    /// Reads the payloads.
    pub(crate) fn read(self, stdin: impl BufRead) -> Result<Vec<Bytes>, String> {
        match self {
            Source::Args(m) => Ok(m.into_iter().map(Bytes::from).collect()),
            Source::Files(files) => files
                .into_iter()
                .map(|f| {
                    std::fs::read(&f)
                        .map(Bytes::from)
                        .map_err(|e| format!("--file {}: {e}", f.display()))
                })
                .collect(),
            Source::Stdin => {
                let mut all = Vec::new();
                let mut stdin = stdin;
                stdin
                    .read_to_end(&mut all)
                    .map_err(|e| format!("reading standard input: {e}"))?;
                Ok(vec![Bytes::from(all)])
            }
            Source::StdinLines => stdin
                .lines()
                .map(|l| l.map(Bytes::from))
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    format!(
                        "reading standard input (one message a line; use --stdin for binary): {e}"
                    )
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_whole_is_byte_exact_and_lines_split() {
        let bytes: Vec<u8> = (0..=255u8).chain(*b"\r\n\n").collect();
        let whole = Source::from_args(vec!["-".into()], vec![], false)
            .read(&bytes[..])
            .expect("read");
        assert_eq!(whole, [Bytes::from(bytes)]);
        let lines = Source::from_args(vec![], vec![], false)
            .read(&b"a\nb\r\nc"[..])
            .expect("read");
        assert_eq!(
            lines,
            [Bytes::from("a"), Bytes::from("b"), Bytes::from("c")]
        );
    }

    #[test]
    fn a_missing_file_names_the_flag_and_the_path() {
        let e = Source::from_args(vec![], vec!["/no/such/file.bin".into()], false)
            .read(&b""[..])
            .expect_err("missing");
        assert!(e.starts_with("--file /no/such/file.bin: "), "{e}");
    }
}
