//! The TypeScript backend: the spec-derived half of the `felix-wire` npm
//! package, `codecs/typescript/src/generated/` (Node 18+, no runtime
//! dependencies). The hand-written half beside it holds the strict JSON
//! parser, the binary reader and writer, and the framing.
//!
//! TypeScript naming lives here, as methods the templates call: types are
//! the Rust names (`CachePut`, `OkMessage`: `Error` would shadow the global),
//! properties are lowerCamelCase (`tenantId`), u64 is `bigint`, smaller
//! integers `number`, enums are unions of their value names. Each message
//! and layout also gets a `<Type>Codec` object of functions the frame
//! dispatch calls; those are not re-exported from the package.

use askama::Template;

use super::{render, Backend, RenderError};
use crate::model::{
    BinFieldModel, BinType, EnumModel, ErrorClassModel, JsonFieldModel, JsonType, LayoutModel,
    MessageModel, Model, Presence,
};
use crate::GeneratedFile;

/// Where the generated modules go.
const DIR: &str = "codecs/typescript/src/generated";

/// The TypeScript backend.
#[derive(Debug, Clone, Copy)]
pub struct TypeScript;

impl Backend for TypeScript {
    fn name(&self) -> &'static str {
        "typescript"
    }
    fn generated_dirs(&self) -> &'static [&'static str] {
        &[DIR]
    }
    fn render(&self, model: &Model) -> Result<Vec<GeneratedFile>, RenderError> {
        typescript_files(model)
    }
}

/// `snake_case` to `lowerCamelCase`.
fn lower_camel(name: &str) -> String {
    let mut out = String::new();
    for (i, part) in name.split('_').filter(|p| !p.is_empty()).enumerate() {
        let mut c = part.chars();
        if let Some(f) = c.next() {
            if i == 0 {
                out.push(f);
            } else {
                out.extend(f.to_uppercase());
            }
            out.push_str(c.as_str());
        }
    }
    out
}

/// Text for a `/** */` comment: a `*/` inside would end it.
pub(crate) fn doc(text: &str) -> String {
    text.replace("*/", "*\\/")
}

impl JsonFieldModel {
    /// The property name.
    pub fn ts_name(&self) -> String {
        lower_camel(&self.name)
    }
    /// The property's type (without `?`).
    pub fn ts_type(&self) -> String {
        match &self.ty {
            JsonType::String => "string".to_string(),
            JsonType::U16 => "number".to_string(),
            JsonType::U64 => "bigint".to_string(),
            JsonType::Bytes => "Uint8Array".to_string(),
            JsonType::BytesList => "Uint8Array[]".to_string(),
            JsonType::Enum(name) => name.clone(),
        }
    }
}

impl BinFieldModel {
    /// The property name.
    pub fn ts_name(&self) -> String {
        lower_camel(&self.name)
    }
    /// The property name of the list a count field counts.
    pub fn ts_count_of(&self) -> String {
        lower_camel(self.count_of_str())
    }
    /// The property's type (without `?`).
    pub fn ts_type(&self) -> String {
        let one = match &self.ty {
            BinType::U8 | BinType::U16 | BinType::U32 => "number".to_string(),
            BinType::U64 => "bigint".to_string(),
            BinType::Str16 => "string".to_string(),
            BinType::Bytes32 => "Uint8Array".to_string(),
            BinType::Enum(name) => name.clone(),
        };
        if self.is_list() {
            format!("{one}[]")
        } else {
            one
        }
    }
}

impl EnumModel {
    /// The codec object of the enum.
    pub fn ts_codec(&self) -> String {
        format!("{}Codec", self.name)
    }
    /// The union type: value names, and `{ readonly key: bigint }` for
    /// object variants.
    pub fn ts_union(&self) -> String {
        self.variants
            .iter()
            .map(|v| match &v.object_key {
                Some(k) => format!("{{ readonly {k}: bigint }}"),
                None => format!("\"{}\"", v.name),
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

impl ErrorClassModel {
    /// The member of the `ErrorClass` object.
    pub fn ts_member(&self) -> String {
        self.name.to_ascii_uppercase()
    }
}

fn enum_imports<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names.filter(|n| !n.is_empty()) {
        for x in [format!("type {name}"), format!("{name}Codec")] {
            if !out.contains(&x) {
                out.push(x);
            }
        }
    }
    out
}

impl MessageModel {
    /// The interface.
    pub fn ts_type(&self) -> &str {
        &self.rust
    }
    /// The codec object.
    pub fn ts_codec(&self) -> String {
        format!("{}Codec", self.rust)
    }
    /// What its module imports from the enums.
    pub fn ts_enum_imports(&self) -> Vec<String> {
        enum_imports(self.fields.iter().map(|f| f.enum_name()))
    }
}

impl LayoutModel {
    /// The interface.
    pub fn ts_type(&self) -> &str {
        &self.rust
    }
    /// The codec object.
    pub fn ts_codec(&self) -> String {
        format!("{}Codec", self.rust)
    }
    /// What its module imports from the enums.
    pub fn ts_enum_imports(&self) -> Vec<String> {
        enum_imports(self.fields.iter().map(|f| f.enum_name()))
    }
    /// Constant names its module imports: flag bits and limits.
    pub fn ts_constants(&self) -> Vec<String> {
        let mut out = vec![self.base_flag.clone()];
        out.extend(self.fixed_modifiers.iter().cloned());
        for f in &self.fields {
            out.extend(f.present_if.iter().cloned());
            out.extend(f.max_bytes_const.iter().cloned());
        }
        out.dedup();
        out
    }
}

#[derive(Template)]
#[template(path = "typescript/index.ts.j2", escape = "none")]
struct IndexTs<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "typescript/constants.ts.j2", escape = "none")]
struct ConstantsTs<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "typescript/errors.ts.j2", escape = "none")]
struct ErrorsTs<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "typescript/enum.ts.j2", escape = "none")]
struct EnumTs<'a> {
    e: &'a EnumModel,
}

#[derive(Template)]
#[template(path = "typescript/enums.ts.j2", escape = "none")]
struct EnumsTs {
    bodies: Vec<String>,
}

#[derive(Template)]
#[template(path = "typescript/message.ts.j2", escape = "none")]
struct MessageTs<'a> {
    msg: &'a MessageModel,
}

#[derive(Template)]
#[template(path = "typescript/messages_index.ts.j2", escape = "none")]
struct MessagesIndexTs<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "typescript/layout.ts.j2", escape = "none")]
struct LayoutTs<'a> {
    l: &'a LayoutModel,
}

#[derive(Template)]
#[template(path = "typescript/layouts_index.ts.j2", escape = "none")]
struct LayoutsIndexTs<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "typescript/frame.ts.j2", escape = "none")]
struct FrameTs<'a> {
    model: &'a Model,
}

/// A file ending in exactly one newline (askama drops the template's last).
fn file(path: String, mut contents: String) -> GeneratedFile {
    while contents.ends_with('\n') {
        contents.pop();
    }
    contents.push('\n');
    GeneratedFile { path, contents }
}

/// Renders the generated modules of the TypeScript package.
pub fn typescript_files(model: &Model) -> Result<Vec<GeneratedFile>, RenderError> {
    let mut files = vec![
        file(
            format!("{DIR}/index.ts"),
            render("typescript/index.ts", &IndexTs { model })?,
        ),
        file(
            format!("{DIR}/constants.ts"),
            render("typescript/constants.ts", &ConstantsTs { model })?,
        ),
        file(
            format!("{DIR}/errors.ts"),
            render("typescript/errors.ts", &ErrorsTs { model })?,
        ),
        file(
            format!("{DIR}/messages/index.ts"),
            render("typescript/messages_index.ts", &MessagesIndexTs { model })?,
        ),
        file(
            format!("{DIR}/layouts/index.ts"),
            render("typescript/layouts_index.ts", &LayoutsIndexTs { model })?,
        ),
        file(
            format!("{DIR}/frame.ts"),
            render("typescript/frame.ts", &FrameTs { model })?,
        ),
    ];
    let bodies = model
        .enums
        .iter()
        .map(|e| render("typescript/enum.ts", &EnumTs { e }))
        .collect::<Result<Vec<_>, _>>()?;
    files.push(file(
        format!("{DIR}/enums.ts"),
        render("typescript/enums.ts", &EnumsTs { bodies })?,
    ));
    for msg in &model.messages {
        files.push(file(
            format!("{DIR}/messages/{}.ts", msg.name),
            render("typescript/message.ts", &MessageTs { msg })?,
        ));
    }
    for l in &model.layouts {
        files.push(file(
            format!("{DIR}/layouts/{}.ts", l.name),
            render("typescript/layout.ts", &LayoutTs { l })?,
        ));
    }
    Ok(files)
}
