//! The Rust backend: `wire/src/generated/`, formatted by `rustfmt` so the
//! checked-in files are exactly what `cargo fmt` would leave.

use std::io::Write as _;
use std::process::{Command, Stdio};

use askama::Template;

use super::{render, Backend, RenderError};
use crate::model::{BinType, EnumModel, JsonType, LayoutModel, MessageModel, Model, Presence};
use crate::GeneratedFile;

/// The Rust backend.
#[derive(Debug, Clone, Copy)]
pub struct Rust;

impl Backend for Rust {
    fn name(&self) -> &'static str {
        "rust"
    }
    fn generated_dirs(&self) -> &'static [&'static str] {
        &["wire/src/generated"]
    }
    fn render(&self, model: &Model) -> Result<Vec<GeneratedFile>, RenderError> {
        rust_files(model)
    }
}

#[derive(Template)]
#[template(path = "rust/mod.rs.j2", escape = "none")]
struct ModRs;

#[derive(Template)]
#[template(path = "rust/constants.rs.j2", escape = "none")]
struct ConstantsRs<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "rust/error_class.rs.j2", escape = "none")]
struct ErrorClassRs<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "rust/enum.rs.j2", escape = "none")]
struct EnumItem<'a> {
    e: &'a EnumModel,
}

#[derive(Template)]
#[template(path = "rust/enums.rs.j2", escape = "none")]
struct EnumsRs {
    bodies: Vec<String>,
}

#[derive(Template)]
#[template(path = "rust/message.rs.j2", escape = "none")]
struct MessageRs<'a> {
    msg: &'a MessageModel,
}

#[derive(Template)]
#[template(path = "rust/messages_mod.rs.j2", escape = "none")]
struct MessagesModRs<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "rust/layout.rs.j2", escape = "none")]
struct LayoutRs<'a> {
    l: &'a LayoutModel,
}

#[derive(Template)]
#[template(path = "rust/layouts_mod.rs.j2", escape = "none")]
struct LayoutsModRs<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "rust/frame.rs.j2", escape = "none")]
struct FrameRs<'a> {
    model: &'a Model,
}

/// Formats Rust source with the toolchain's rustfmt (edition 2021).
fn rustfmt(path: &str, source: String) -> Result<String, RenderError> {
    let err = |message: String| RenderError::Rustfmt {
        path: path.to_string(),
        message,
    };
    let bin = std::env::var("RUSTFMT").unwrap_or_else(|_| "rustfmt".to_string());
    let mut child = Command::new(bin)
        .args(["--edition", "2021", "--emit", "stdout", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            err(format!(
                "cannot start rustfmt ({e}); install it with `rustup component add rustfmt`"
            ))
        })?;
    let mut stdin = child.stdin.take().ok_or_else(|| err("no stdin".into()))?;
    let writer = std::thread::spawn(move || stdin.write_all(source.as_bytes()));
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    writer
        .join()
        .map_err(|_| err("writer thread panicked".into()))?
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    String::from_utf8(out.stdout).map_err(|e| err(e.to_string()))
}

fn rust_file(path: String, source: String) -> Result<GeneratedFile, RenderError> {
    let contents = rustfmt(&path, source)?;
    Ok(GeneratedFile { path, contents })
}

/// Renders the Rust codec files under `wire/src/generated/`.
pub fn rust_files(model: &Model) -> Result<Vec<GeneratedFile>, RenderError> {
    let dir = "wire/src/generated";
    let mut files = vec![
        rust_file(format!("{dir}/mod.rs"), render("mod.rs", &ModRs)?)?,
        rust_file(
            format!("{dir}/constants.rs"),
            render("constants.rs", &ConstantsRs { model })?,
        )?,
        rust_file(
            format!("{dir}/error_class.rs"),
            render("error_class.rs", &ErrorClassRs { model })?,
        )?,
        rust_file(
            format!("{dir}/frame.rs"),
            render("frame.rs", &FrameRs { model })?,
        )?,
        rust_file(
            format!("{dir}/messages/mod.rs"),
            render("messages_mod.rs", &MessagesModRs { model })?,
        )?,
        rust_file(
            format!("{dir}/layouts/mod.rs"),
            render("layouts_mod.rs", &LayoutsModRs { model })?,
        )?,
    ];
    let bodies = model
        .enums
        .iter()
        .map(|e| render("enum.rs", &EnumItem { e }))
        .collect::<Result<Vec<_>, _>>()?;
    files.push(rust_file(
        format!("{dir}/enums.rs"),
        render("enums.rs", &EnumsRs { bodies })?,
    )?);
    for msg in &model.messages {
        files.push(rust_file(
            format!("{dir}/messages/{}.rs", msg.name),
            render("message.rs", &MessageRs { msg })?,
        )?);
    }
    for l in &model.layouts {
        files.push(rust_file(
            format!("{dir}/layouts/{}.rs", l.name),
            render("layout.rs", &LayoutRs { l })?,
        )?);
    }
    Ok(files)
}
