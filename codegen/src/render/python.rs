//! The Python backend: the spec-derived half of the `felix_wire` package,
//! `codecs/python/felix_wire/generated/` (Python 3.9+, standard library
//! only). The other half, hand-written and spec-independent, sits beside it:
//! the strict JSON parser, the binary reader and the framing.
//!
//! Python naming lives here, as methods the templates call: classes are the
//! Rust names (`CachePut`, `OkMessage`), fields keep their spec names (a
//! Python keyword gets a trailing `_`), enum members are upper case, error
//! classes are `<CamelCase>Error` exceptions.

use askama::Template;

use super::{render, Backend, RenderError};
use crate::model::{
    camel, BinFieldModel, BinType, EnumModel, ErrorClassModel, JsonFieldModel, JsonType,
    LayoutModel, MessageModel, Model, Presence, VariantModel,
};
use crate::GeneratedFile;

/// Where the generated package modules go.
const DIR: &str = "codecs/python/felix_wire/generated";

/// The Python backend.
#[derive(Debug, Clone, Copy)]
pub struct Python;

impl Backend for Python {
    fn name(&self) -> &'static str {
        "python"
    }
    fn generated_dirs(&self) -> &'static [&'static str] {
        &[DIR]
    }
    fn render(&self, model: &Model) -> Result<Vec<GeneratedFile>, RenderError> {
        python_files(model)
    }
}

/// Python's keywords and the soft keywords and builtins a generated name
/// must not take.
const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield", "match", "case", "type", "bytes", "int", "str", "list", "cls", "self",
];

/// A spec name as a Python identifier.
fn ident(name: &str) -> String {
    if KEYWORDS.contains(&name) {
        format!("{name}_")
    } else {
        name.to_string()
    }
}

/// Text for a docstring body: backslashes and quotes that could end it are
/// escaped.
pub(crate) fn doc(text: &str) -> String {
    text.replace('\\', "\\\\").replace("\"\"\"", "\\\"\\\"\\\"")
}

fn enum_value_type(model: &Model, name: &str) -> String {
    model
        .enum_named(name)
        .map(EnumModel::py_value_type)
        .unwrap_or_else(|| name.to_string())
}

fn optional(ty: String, opt: bool) -> String {
    if opt {
        format!("Optional[{ty}]")
    } else {
        ty
    }
}

impl JsonFieldModel {
    /// The attribute name.
    pub fn py_name(&self) -> String {
        ident(&self.name)
    }
    /// The attribute's annotation.
    pub fn py_type(&self, model: &Model) -> String {
        let ty = match &self.ty {
            JsonType::String => "str".to_string(),
            JsonType::U16 | JsonType::U64 => "int".to_string(),
            JsonType::Bytes => "bytes".to_string(),
            JsonType::BytesList => "List[bytes]".to_string(),
            JsonType::Enum(name) => enum_value_type(model, name),
        };
        optional(ty, self.optional())
    }
}

impl BinFieldModel {
    /// The attribute name.
    pub fn py_name(&self) -> String {
        ident(&self.name)
    }
    /// The attribute's annotation.
    pub fn py_type(&self, model: &Model) -> String {
        let one = match &self.ty {
            BinType::U8 | BinType::U16 | BinType::U32 | BinType::U64 => "int".to_string(),
            BinType::Str16 => "str".to_string(),
            BinType::Bytes32 => "bytes".to_string(),
            BinType::Enum(name) => enum_value_type(model, name),
        };
        if self.is_list() {
            format!("List[{one}]")
        } else {
            optional(one, self.is_conditional())
        }
    }
    /// The attribute name of the list a count field counts.
    pub fn py_count_of(&self) -> String {
        ident(self.count_of_str())
    }
}

impl EnumModel {
    /// The annotation for a value: the enum class, or a `Union` with the
    /// classes of its object variants.
    pub fn py_value_type(&self) -> String {
        if self.all_unit {
            return self.name.clone();
        }
        let mut parts = vec![self.name.clone()];
        parts.extend(
            self.variants
                .iter()
                .filter(|v| v.object_key.is_some())
                .map(|v| self.py_object_class(v)),
        );
        format!("Union[{}]", parts.join(", "))
    }
    /// The dataclass of an object variant (`StartPositionOffset`).
    pub fn py_object_class(&self, v: &VariantModel) -> String {
        format!("{}{}", self.name, camel(&v.name))
    }
    /// The unit variants.
    pub fn unit_variants(&self) -> Vec<&VariantModel> {
        self.variants
            .iter()
            .filter(|v| v.object_key.is_none())
            .collect()
    }
    /// The object variants.
    pub fn object_variants(&self) -> Vec<&VariantModel> {
        self.variants
            .iter()
            .filter(|v| v.object_key.is_some())
            .collect()
    }
    /// Names this enum exports.
    pub fn py_exports(&self) -> Vec<String> {
        let mut names = vec![self.name.clone()];
        names.extend(
            self.object_variants()
                .iter()
                .map(|v| self.py_object_class(v)),
        );
        names
    }
}

impl VariantModel {
    /// The enum member name.
    pub fn py_member(&self) -> String {
        self.name.to_ascii_uppercase()
    }
}

impl ErrorClassModel {
    /// The exception class.
    pub fn py_class(&self) -> String {
        format!("{}Error", self.rust)
    }
    /// The `ErrorClass` member.
    pub fn py_member(&self) -> String {
        self.name.to_ascii_uppercase()
    }
}

fn enum_imports<'a>(model: &Model, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if let Some(e) = model.enum_named(name) {
            for x in e.py_exports() {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
    }
    out
}

impl MessageModel {
    /// The module name.
    pub fn py_module(&self) -> String {
        ident(&self.name)
    }
    /// The dataclass.
    pub fn py_class(&self) -> &str {
        &self.rust
    }
    /// Enum names its module imports.
    pub fn py_enum_imports(&self, model: &Model) -> Vec<String> {
        enum_imports(model, self.fields.iter().map(|f| f.enum_name()))
    }
    /// Dataclass fields in declaration order: required ones (spec order),
    /// then the optional ones, which default to `None`.
    pub fn py_declared(&self) -> Vec<&JsonFieldModel> {
        let (mut req, opt): (Vec<_>, Vec<_>) = self.fields.iter().partition(|f| !f.optional());
        req.extend(opt);
        req
    }
}

impl LayoutModel {
    /// The module name.
    pub fn py_module(&self) -> String {
        ident(&self.name)
    }
    /// The dataclass.
    pub fn py_class(&self) -> &str {
        &self.rust
    }
    /// Enum names its module imports.
    pub fn py_enum_imports(&self, model: &Model) -> Vec<String> {
        enum_imports(model, self.fields.iter().map(|f| f.enum_name()))
    }
    /// Stored fields in declaration order: required first, then the
    /// conditional ones, which default to `None`.
    pub fn py_declared(&self) -> Vec<&BinFieldModel> {
        let (mut req, opt): (Vec<_>, Vec<_>) =
            self.stored().into_iter().partition(|f| !f.is_conditional());
        req.extend(opt);
        req
    }
    /// Constant names its module imports: flag bits and limits.
    pub fn py_constants(&self) -> Vec<String> {
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
#[template(path = "python/init.py.j2", escape = "none")]
struct InitPy;

#[derive(Template)]
#[template(path = "python/constants.py.j2", escape = "none")]
struct ConstantsPy<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "python/errors.py.j2", escape = "none")]
struct ErrorsPy<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "python/enum.py.j2", escape = "none")]
struct EnumPy<'a> {
    e: &'a EnumModel,
}

#[derive(Template)]
#[template(path = "python/enums.py.j2", escape = "none")]
struct EnumsPy<'a> {
    model: &'a Model,
    bodies: Vec<String>,
}

#[derive(Template)]
#[template(path = "python/message.py.j2", escape = "none")]
struct MessagePy<'a> {
    model: &'a Model,
    msg: &'a MessageModel,
}

#[derive(Template)]
#[template(path = "python/messages_init.py.j2", escape = "none")]
struct MessagesInitPy<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "python/layout.py.j2", escape = "none")]
struct LayoutPy<'a> {
    model: &'a Model,
    l: &'a LayoutModel,
}

#[derive(Template)]
#[template(path = "python/layouts_init.py.j2", escape = "none")]
struct LayoutsInitPy<'a> {
    model: &'a Model,
}

#[derive(Template)]
#[template(path = "python/frame.py.j2", escape = "none")]
struct FramePy<'a> {
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

/// Renders the generated modules of the Python package.
pub fn python_files(model: &Model) -> Result<Vec<GeneratedFile>, RenderError> {
    let mut files = vec![
        file(
            format!("{DIR}/__init__.py"),
            render("python/init.py", &InitPy)?,
        ),
        file(
            format!("{DIR}/constants.py"),
            render("python/constants.py", &ConstantsPy { model })?,
        ),
        file(
            format!("{DIR}/errors.py"),
            render("python/errors.py", &ErrorsPy { model })?,
        ),
        file(
            format!("{DIR}/messages/__init__.py"),
            render("python/messages_init.py", &MessagesInitPy { model })?,
        ),
        file(
            format!("{DIR}/layouts/__init__.py"),
            render("python/layouts_init.py", &LayoutsInitPy { model })?,
        ),
        file(
            format!("{DIR}/frame.py"),
            render("python/frame.py", &FramePy { model })?,
        ),
    ];
    let bodies = model
        .enums
        .iter()
        .map(|e| render("python/enum.py", &EnumPy { e }))
        .collect::<Result<Vec<_>, _>>()?;
    files.push(file(
        format!("{DIR}/enums.py"),
        render("python/enums.py", &EnumsPy { model, bodies })?,
    ));
    for msg in &model.messages {
        files.push(file(
            format!("{DIR}/messages/{}.py", msg.py_module()),
            render("python/message.py", &MessagePy { model, msg })?,
        ));
    }
    for l in &model.layouts {
        files.push(file(
            format!("{DIR}/layouts/{}.py", l.py_module()),
            render("python/layout.py", &LayoutPy { model, l })?,
        ));
    }
    Ok(files)
}
