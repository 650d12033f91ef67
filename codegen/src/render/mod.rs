//! Renders the askama templates into the generated codecs and docs.
//!
//! Each language is a [`Backend`]: it owns a folder of templates
//! (`templates/<language>/`, one per construct -- an enum, a message, a
//! layout, the frame, the constants... -- plus `macros.j2` for what they
//! share) and the directories its output lives in. All backends render
//! from the same validated [`Model`], so a spec change regenerates every
//! codec at once and `--check` covers them all.
//!
//! - [`rust`], `wire/src/generated/` (formatted by `rustfmt`);
//! - [`python`], `codecs/python/felix_wire/generated/`;
//! - [`typescript`], `codecs/typescript/src/generated/`.
//!
//! Naming rules of a language (type names, keywords, how a field type is
//! spelled) live in that backend's module, as methods on the model types,
//! so its templates stay free of decisions.

use askama::Template;

use crate::model::{BinType, Model};
use crate::GeneratedFile;

pub mod python;
pub mod rust;
pub mod typescript;

/// One target language of the generator.
pub trait Backend {
    /// Short name (`rust`, `python`, `typescript`).
    fn name(&self) -> &'static str;
    /// Directories (relative to the workspace root) whose every file this
    /// backend generates: a file there that it does not produce is stale.
    fn generated_dirs(&self) -> &'static [&'static str];
    /// Renders every file of this backend.
    fn render(&self, model: &Model) -> Result<Vec<GeneratedFile>, RenderError>;
}

/// Every backend, in the order their files are rendered.
pub const BACKENDS: &[&dyn Backend] = &[&rust::Rust, &python::Python, &typescript::TypeScript];

#[derive(Template)]
#[template(path = "docs/protocol.md.j2", escape = "none")]
struct ProtocolMd<'a> {
    model: &'a Model,
}

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template failed to render.
    #[error("template {template}: {source}")]
    Template {
        /// Which template.
        template: &'static str,
        /// Askama's error.
        source: askama::Error,
    },
    /// rustfmt could not be run or rejected the output.
    #[error("rustfmt on {path}: {message}")]
    Rustfmt {
        /// The file being formatted.
        path: String,
        /// What went wrong.
        message: String,
    },
}

pub(crate) fn render<T: Template>(template: &'static str, t: &T) -> Result<String, RenderError> {
    t.render()
        .map_err(|source| RenderError::Template { template, source })
}

/// Renders `docs/protocol.md`.
pub fn protocol_doc(model: &Model) -> Result<GeneratedFile, RenderError> {
    Ok(GeneratedFile {
        path: "docs/protocol.md".to_string(),
        contents: render("protocol.md", &ProtocolMd { model })?,
    })
}
