//! The resolved model: the validated spec with every name, type and literal
//! the templates need already worked out.
//!
//! Templates stay free of logic beyond `if`/`for`/`match`: anything that
//! needs a decision (Rust type of a field, the literal bytes before a JSON
//! value) is computed here once, so the generated code and the docs agree by
//! construction. A field's type and presence rule are typed ([`JsonType`],
//! [`BinType`], [`Presence`]), and every backend's templates `match` on them
//! (as uniffi's do) instead of comparing strings, so a new type is a compile
//! error in each template that forgot it. Backends for other languages (see
//! [`crate::render`]) add their own naming on top, in their module.

use crate::spec::{Direction, FlagRole, JsonFieldDef, Spec};

pub use crate::spec::Presence;

/// The type of a JSON field, for templates to `match` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonType {
    /// A JSON string.
    String,
    /// An integer 0..=65535.
    U16,
    /// An integer 0..=2^64-1 (beyond 2^53: JavaScript needs `bigint`).
    U64,
    /// Bytes as standard padded base64.
    Bytes,
    /// An array of base64 byte strings.
    BytesList,
    /// A spec enum, by name.
    Enum(String),
}

/// The type of a binary layout field, for templates to `match` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinType {
    /// One byte.
    U8,
    /// Big-endian u16.
    U16,
    /// Big-endian u32.
    U32,
    /// Big-endian u64.
    U64,
    /// u16 length + UTF-8.
    Str16,
    /// u32 length + bytes.
    Bytes32,
    /// One byte standing for a value of this spec enum.
    Enum(String),
}

impl BinType {
    /// Size in bytes of the fixed part (the length prefix for str16/bytes32).
    pub fn fixed_size(&self) -> usize {
        match self {
            BinType::U8 | BinType::Enum(_) => 1,
            BinType::U16 | BinType::Str16 => 2,
            BinType::U32 | BinType::Bytes32 => 4,
            BinType::U64 => 8,
        }
    }
}

/// Rust identifiers that a CamelCase message name must not take, because
/// generated code or its users need the prelude item of the same name.
const RESERVED_TYPE_NAMES: &[&str] = &[
    "Ok", "Err", "Some", "None", "Option", "Result", "Error", "String", "Vec", "Box",
];

/// The resolved spec.
#[derive(Debug, Clone)]
pub struct Model {
    /// Protocol name.
    pub protocol: String,
    /// Protocol version.
    pub version: u16,
    /// Protocol description.
    pub doc: String,
    /// Header size in bytes.
    pub header_size: usize,
    /// Magic number.
    pub magic: u32,
    /// Magic as ASCII.
    pub magic_ascii: String,
    /// Header fields in order, with their offsets.
    pub header_fields: Vec<HeaderFieldModel>,
    /// Flag bits.
    pub flags: Vec<FlagModel>,
    /// OR of all flag bits.
    pub known_flags: u16,
    /// Flags a silent peer supports.
    pub original_v1_flags: u16,
    /// Valid flags values.
    pub combinations: Vec<CombinationModel>,
    /// Limits.
    pub limits: Vec<LimitModel>,
    /// Enums.
    pub enums: Vec<EnumModel>,
    /// Error classes.
    pub error_classes: Vec<ErrorClassModel>,
    /// JSON messages.
    pub messages: Vec<MessageModel>,
    /// Binary layouts.
    pub layouts: Vec<LayoutModel>,
}

/// A header field with its offset.
#[derive(Debug, Clone)]
pub struct HeaderFieldModel {
    /// Name.
    pub name: String,
    /// Type name.
    pub ty: String,
    /// Offset in the header.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// Meaning.
    pub doc: String,
}

/// A flag bit.
#[derive(Debug, Clone)]
pub struct FlagModel {
    /// SCREAMING_CASE name.
    pub name: String,
    /// Bit value.
    pub bit: u16,
    /// `layout` or `modifier`.
    pub role: &'static str,
    /// Flags it modifies (names).
    pub modifies: Vec<String>,
    /// Meaning.
    pub doc: String,
}

/// A valid flags value.
#[derive(Debug, Clone)]
pub struct CombinationModel {
    /// The value.
    pub value: u16,
    /// Names of its bits, `A | B`, or `0` for none (a Rust expression).
    pub expr: String,
    /// Names of its bits for prose, `A + B`, or `none`.
    pub names: String,
    /// `json` or a layout name.
    pub layout: String,
    /// Rust variant of `Layout` (`Json`, `BinaryPublishBatch`...).
    pub layout_variant: String,
}

/// A limit.
#[derive(Debug, Clone)]
pub struct LimitModel {
    /// snake_case name.
    pub name: String,
    /// SCREAMING_CASE constant name.
    pub const_name: String,
    /// Value.
    pub value: u64,
    /// Meaning.
    pub doc: String,
}

/// An enum.
#[derive(Debug, Clone)]
pub struct EnumModel {
    /// CamelCase name.
    pub name: String,
    /// Meaning.
    pub doc: String,
    /// Variants.
    pub variants: Vec<VariantModel>,
    /// Some variant has a JSON form.
    pub has_json: bool,
    /// Some variant is a JSON object.
    pub has_json_object: bool,
    /// Some variant has a byte.
    pub has_bytes: bool,
    /// Every variant has a byte.
    pub all_bytes: bool,
    /// Every variant is a unit (no payload).
    pub all_unit: bool,
}

/// An enum variant.
#[derive(Debug, Clone)]
pub struct VariantModel {
    /// snake_case name.
    pub name: String,
    /// CamelCase Rust variant.
    pub rust: String,
    /// JSON string form.
    pub json: Option<String>,
    /// JSON object key, for object variants.
    pub object_key: Option<String>,
    /// Byte value.
    pub byte: Option<u8>,
    /// Meaning.
    pub doc: String,
}

impl VariantModel {
    /// JSON string form or empty.
    pub fn json_str(&self) -> &str {
        self.json.as_deref().unwrap_or("")
    }
    /// Object key or empty.
    pub fn key_str(&self) -> &str {
        self.object_key.as_deref().unwrap_or("")
    }
    /// Byte value as text, or empty.
    pub fn byte_str(&self) -> String {
        self.byte.map(|b| b.to_string()).unwrap_or_default()
    }
}

/// An error class.
#[derive(Debug, Clone)]
pub struct ErrorClassModel {
    /// snake_case name.
    pub name: String,
    /// CamelCase Rust variant.
    pub rust: String,
    /// Meaning.
    pub doc: String,
}

/// A JSON message.
#[derive(Debug, Clone)]
pub struct MessageModel {
    /// The `type` value.
    pub name: String,
    /// Rust struct name.
    pub rust: String,
    /// Rust variant of `Message`.
    pub variant: String,
    /// `ClientToBroker` or `BrokerToClient`.
    pub direction: &'static str,
    /// Human direction.
    pub direction_text: &'static str,
    /// Meaning.
    pub doc: String,
    /// Fields.
    pub fields: Vec<JsonFieldModel>,
    /// Rust byte-string literal of `{"type":"name"`.
    pub prefix_literal: String,
    /// Length of the fixed parts: prefix, every always-written key, `}`.
    pub fixed_len: usize,
    /// Canonical examples: (name, JSON text).
    pub examples: Vec<(String, String)>,
}

/// A JSON field.
#[derive(Debug, Clone)]
pub struct JsonFieldModel {
    /// Key.
    pub name: String,
    /// `message.key`, used in errors.
    pub qualified: String,
    /// The type.
    pub ty: JsonType,
    /// Spec type text.
    pub spec_type: String,
    /// The presence rule (displays as its spec name, `required`...).
    pub presence: Presence,
    /// Rust type of the value (without Option).
    pub rust_type: String,
    /// Rust type of the struct field.
    pub field_type: String,
    /// Rust byte-string literal of `,"name":`.
    pub key_literal: String,
    /// Byte length of `,"name":`.
    pub key_len: usize,
    /// Meaning.
    pub doc: String,
}

impl JsonFieldModel {
    /// The struct field is an `Option`.
    pub fn optional(&self) -> bool {
        self.presence != Presence::Required
    }
    /// The spec enum's name for enum fields, or empty.
    pub fn enum_name(&self) -> &str {
        match &self.ty {
            JsonType::Enum(name) => name,
            _ => "",
        }
    }
    /// The neutral (vector) form is the value itself (strings and integers).
    pub fn neutral_is_identity(&self) -> bool {
        matches!(self.ty, JsonType::String | JsonType::U16 | JsonType::U64)
    }
}

/// A binary layout.
#[derive(Debug, Clone)]
pub struct LayoutModel {
    /// snake_case name.
    pub name: String,
    /// Rust struct name (and `Frame` variant).
    pub rust: String,
    /// `ClientToBroker` or `BrokerToClient`.
    pub direction: &'static str,
    /// Human direction.
    pub direction_text: &'static str,
    /// Meaning.
    pub doc: String,
    /// The layout flag bit's constant name.
    pub base_flag: String,
    /// Modifier flags always set for this layout (constant names).
    pub fixed_modifiers: Vec<String>,
    /// Fields in wire order, counts included.
    pub fields: Vec<BinFieldModel>,
    /// Minimum payload size (every fixed field, empty strings and lists).
    pub min_len: usize,
}

impl LayoutModel {
    /// Fields stored in the struct (count fields are derived).
    pub fn stored(&self) -> Vec<&BinFieldModel> {
        self.fields
            .iter()
            .filter(|f| f.count_of.is_none())
            .collect()
    }
}

/// A binary field.
#[derive(Debug, Clone)]
pub struct BinFieldModel {
    /// Name.
    pub name: String,
    /// `layout.field`, used in errors.
    pub qualified: String,
    /// The type.
    pub ty: BinType,
    /// Spec type text.
    pub spec_type: String,
    /// Name of the list this count field counts.
    pub count_of: Option<String>,
    /// Name of the count field of this list.
    pub repeat: Option<String>,
    /// Constant name of the modifier flag that makes it present.
    pub present_if: Option<String>,
    /// Spec name of that flag, for docs.
    pub present_if_name: String,
    /// Constant name of the limit writers cut it to.
    pub max_bytes_const: Option<String>,
    /// Rust type of one value.
    pub rust_type: String,
    /// Rust type of the struct field.
    pub field_type: String,
    /// Wire size text for docs (`8`, `2 + n`, `4 + n each`).
    pub size_text: String,
    /// Meaning.
    pub doc: String,
}

impl BinFieldModel {
    /// Size in bytes of the fixed part (the length prefix of str16/bytes32).
    pub fn size(&self) -> usize {
        self.ty.fixed_size()
    }
    /// The spec enum's name for enum fields, or empty.
    pub fn enum_name(&self) -> &str {
        match &self.ty {
            BinType::Enum(name) => name,
            _ => "",
        }
    }
    /// The neutral (vector) form is the value itself (strings and integers).
    pub fn neutral_is_identity(&self) -> bool {
        !matches!(self.ty, BinType::Bytes32 | BinType::Enum(_))
    }
    /// Whether this is a count field (derived from its list, not stored).
    pub fn is_count(&self) -> bool {
        self.count_of.is_some()
    }
    /// Name of the list a count field counts, or empty.
    pub fn count_of_str(&self) -> &str {
        self.count_of.as_deref().unwrap_or("")
    }
    /// Whether this is a list field.
    pub fn is_list(&self) -> bool {
        self.repeat.is_some()
    }
    /// Whether this field depends on a modifier flag.
    pub fn is_conditional(&self) -> bool {
        self.present_if.is_some()
    }
    /// Present-if constant, or empty.
    pub fn present_if_str(&self) -> &str {
        self.present_if.as_deref().unwrap_or("")
    }
    /// Limit constant, or empty.
    pub fn max_bytes_str(&self) -> &str {
        self.max_bytes_const.as_deref().unwrap_or("")
    }
    /// Count field name of a list, or empty.
    pub fn repeat_str(&self) -> &str {
        self.repeat.as_deref().unwrap_or("")
    }
}

/// `snake_case` to `CamelCase`.
pub fn camel(name: &str) -> String {
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `snake_case` to `SCREAMING_CASE`.
pub fn screaming(name: &str) -> String {
    name.to_ascii_uppercase()
}

/// A Rust byte-string literal (`b"..."`) holding `text`.
pub fn byte_literal(text: &str) -> String {
    let mut out = String::from("b\"");
    for b in text.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// The Rust name of a message struct: CamelCase, with a `Message` suffix
/// where CamelCase would shadow a prelude item.
pub fn message_type_name(name: &str) -> String {
    let c = camel(name);
    if RESERVED_TYPE_NAMES.contains(&c.as_str()) {
        format!("{c}Message")
    } else {
        c
    }
}

fn direction(d: Direction) -> (&'static str, &'static str) {
    match d {
        Direction::ClientToBroker => ("ClientToBroker", "client to broker"),
        Direction::BrokerToClient => ("BrokerToClient", "broker to client"),
    }
}

fn json_field(spec: &Spec, message: &str, f: &JsonFieldDef) -> JsonFieldModel {
    let (ty, rust_type) = match f.ty.as_str() {
        "string" => (JsonType::String, "String"),
        "u16" => (JsonType::U16, "u16"),
        "u64" => (JsonType::U64, "u64"),
        "bytes" => (JsonType::Bytes, "Bytes"),
        "list<bytes>" => (JsonType::BytesList, "Vec<Bytes>"),
        other => {
            debug_assert!(spec.enums.iter().any(|e| e.name == other));
            (JsonType::Enum(other.to_string()), other)
        }
    };
    let rust_type = rust_type.to_string();
    let field_type = if f.presence == Presence::Required {
        rust_type.clone()
    } else {
        format!("Option<{rust_type}>")
    };
    let key = format!(",\"{}\":", f.name);
    JsonFieldModel {
        name: f.name.clone(),
        qualified: format!("{message}.{}", f.name),
        ty,
        spec_type: f.ty.clone(),
        presence: f.presence,
        rust_type,
        field_type,
        key_len: key.len(),
        key_literal: byte_literal(&key),
        doc: f.doc.clone().unwrap_or_default(),
    }
}

impl Model {
    /// Resolves a spec that [`crate::validate::validate`] accepted.
    pub fn new(spec: &Spec) -> Model {
        let flag_const = |name: &str| name.to_string();
        let mut offset = 0;
        let header_fields = spec
            .header
            .fields
            .iter()
            .map(|f| {
                let size = if f.ty == "u32" { 4 } else { 2 };
                let m = HeaderFieldModel {
                    name: f.name.clone(),
                    ty: f.ty.clone(),
                    offset,
                    size,
                    doc: f.doc.clone(),
                };
                offset += size;
                m
            })
            .collect();
        let flags: Vec<FlagModel> = spec
            .flags
            .iter()
            .map(|f| FlagModel {
                name: f.name.clone(),
                bit: f.bit,
                role: match f.role {
                    FlagRole::Layout => "layout",
                    FlagRole::Modifier => "modifier",
                },
                modifies: f.modifies.clone(),
                doc: f.doc.clone(),
            })
            .collect();
        let bit_of = |name: &str| {
            flags
                .iter()
                .find(|f| f.name == name)
                .map(|f| f.bit)
                .unwrap_or(0)
        };
        let layout_variant = |layout: &str| {
            if layout == "json" {
                "Json".to_string()
            } else {
                camel(layout)
            }
        };
        let combinations = spec
            .combinations
            .iter()
            .map(|c| CombinationModel {
                value: c.flags.iter().map(|n| bit_of(n)).fold(0, |a, b| a | b),
                expr: if c.flags.is_empty() {
                    "0".to_string()
                } else {
                    c.flags.join(" | ")
                },
                names: if c.flags.is_empty() {
                    "none".to_string()
                } else {
                    c.flags.join(" + ")
                },
                layout: c.layout.clone(),
                layout_variant: layout_variant(&c.layout),
            })
            .collect::<Vec<_>>();
        let limits = spec
            .limits
            .iter()
            .map(|l| LimitModel {
                name: l.name.clone(),
                const_name: screaming(&l.name),
                value: l.value,
                doc: l.doc.clone(),
            })
            .collect();
        let enums = spec
            .enums
            .iter()
            .map(|e| {
                let variants: Vec<VariantModel> = e
                    .variants
                    .iter()
                    .map(|v| VariantModel {
                        name: v.name.clone(),
                        rust: camel(&v.name),
                        json: v.json.clone(),
                        object_key: v.json_object.as_ref().map(|o| o.key.clone()),
                        byte: v.byte,
                        doc: v.doc.clone(),
                    })
                    .collect();
                EnumModel {
                    name: e.name.clone(),
                    doc: e.doc.clone(),
                    has_json: variants
                        .iter()
                        .any(|v| v.json.is_some() || v.object_key.is_some()),
                    has_json_object: variants.iter().any(|v| v.object_key.is_some()),
                    has_bytes: variants.iter().any(|v| v.byte.is_some()),
                    all_bytes: variants.iter().all(|v| v.byte.is_some()),
                    all_unit: variants.iter().all(|v| v.object_key.is_none()),
                    variants,
                }
            })
            .collect();
        let error_classes = spec
            .error_classes
            .iter()
            .map(|c| ErrorClassModel {
                name: c.name.clone(),
                rust: camel(&c.name),
                doc: c.doc.clone(),
            })
            .collect();
        let messages = spec
            .messages
            .iter()
            .map(|m| {
                let (dir, dir_text) = direction(m.direction);
                let fields: Vec<JsonFieldModel> = m
                    .fields
                    .iter()
                    .map(|f| json_field(spec, &m.name, f))
                    .collect();
                let prefix = format!("{{\"type\":\"{}\"", m.name);
                let fixed_len = prefix.len()
                    + 1
                    + fields
                        .iter()
                        .filter(|f| f.presence != Presence::Omit)
                        .map(|f| f.key_len)
                        .sum::<usize>();
                let rust = message_type_name(&m.name);
                MessageModel {
                    name: m.name.clone(),
                    variant: camel(&m.name),
                    rust,
                    direction: dir,
                    direction_text: dir_text,
                    doc: m.doc.clone(),
                    fields,
                    prefix_literal: byte_literal(&prefix),
                    fixed_len,
                    examples: m
                        .examples
                        .iter()
                        .filter(|e| !e.decode_only)
                        .filter_map(|e| Some((e.name.clone(), e.json.clone()?)))
                        .collect(),
                }
            })
            .collect();
        let layouts = spec
            .layouts
            .iter()
            .map(|l| {
                let (dir, dir_text) = direction(l.direction);
                let combos: Vec<&crate::spec::CombinationDef> = spec
                    .combinations
                    .iter()
                    .filter(|c| c.layout == l.name)
                    .collect();
                let base_flag = combos
                    .iter()
                    .flat_map(|c| c.flags.iter())
                    .find(|n| {
                        spec.flags
                            .iter()
                            .any(|f| &f.name == *n && f.role == FlagRole::Layout)
                    })
                    .cloned()
                    .unwrap_or_default();
                let conditional: Vec<&str> = l
                    .fields
                    .iter()
                    .filter_map(|f| f.present_if.as_deref())
                    .collect();
                // Modifiers set in every combination of this layout and not
                // tied to an optional field are part of the layout itself.
                let fixed_modifiers = combos
                    .first()
                    .map(|c| {
                        c.flags
                            .iter()
                            .filter(|n| **n != base_flag && !conditional.contains(&n.as_str()))
                            .filter(|n| combos.iter().all(|c| c.flags.contains(n)))
                            .map(|n| flag_const(n))
                            .collect()
                    })
                    .unwrap_or_default();
                let fields: Vec<BinFieldModel> = l
                    .fields
                    .iter()
                    .map(|f| {
                        let (ty, rust_type, size) = match f.ty.as_str() {
                            "u8" => (BinType::U8, "u8", "1"),
                            "u16" => (BinType::U16, "u16", "2"),
                            "u32" => (BinType::U32, "u32", "4"),
                            "u64" => (BinType::U64, "u64", "8"),
                            "str16" => (BinType::Str16, "String", "2 + n"),
                            "bytes32" => (BinType::Bytes32, "Bytes", "4 + n"),
                            other => (BinType::Enum(other.to_string()), other, "1"),
                        };
                        let rust_type = rust_type.to_string();
                        let field_type = if f.repeat.is_some() {
                            format!("Vec<{rust_type}>")
                        } else if f.present_if.is_some() {
                            format!("Option<{rust_type}>")
                        } else {
                            rust_type.clone()
                        };
                        let size_text = if f.repeat.is_some() {
                            format!("{} x ({size})", f.repeat.as_deref().unwrap_or(""))
                        } else if let Some(p) = &f.present_if {
                            format!("{size} if {p}")
                        } else {
                            size.to_string()
                        };
                        BinFieldModel {
                            name: f.name.clone(),
                            qualified: format!("{}.{}", l.name, f.name),
                            ty,
                            spec_type: f.ty.clone(),
                            count_of: f.count_of.clone(),
                            repeat: f.repeat.clone(),
                            present_if: f.present_if.as_deref().map(flag_const),
                            present_if_name: f.present_if.clone().unwrap_or_default(),
                            max_bytes_const: f.max_bytes_limit.as_deref().map(screaming),
                            rust_type,
                            field_type,
                            size_text,
                            doc: f.doc.clone().unwrap_or_default(),
                        }
                    })
                    .collect();
                let min_len = fields
                    .iter()
                    .filter(|f| f.present_if.is_none() && f.repeat.is_none())
                    .map(BinFieldModel::size)
                    .sum();
                LayoutModel {
                    name: l.name.clone(),
                    rust: camel(&l.name),
                    direction: dir,
                    direction_text: dir_text,
                    doc: l.doc.clone(),
                    base_flag,
                    fixed_modifiers,
                    fields,
                    min_len,
                }
            })
            .collect();
        Model {
            protocol: spec.protocol.clone(),
            version: spec.header.version,
            doc: spec.doc.clone(),
            header_size: spec.header.size,
            magic: spec.header.magic,
            magic_ascii: spec.header.magic_ascii.clone(),
            header_fields,
            flags,
            known_flags: spec.known_flags,
            original_v1_flags: spec.original_v1_flags,
            combinations,
            limits,
            enums,
            error_classes,
            messages,
            layouts,
        }
    }

    /// The enum with this name.
    pub fn enum_named(&self, name: &str) -> Option<&EnumModel> {
        self.enums.iter().find(|e| e.name == name)
    }
}
