//! The serde model of `spec/felix-wire.yaml`, exactly as written.
//!
//! Every struct denies unknown keys so a typo in the spec is an error with a
//! line and column rather than a silently ignored field. Semantic checks
//! (names, references, bits) live in [`crate::validate`].

use serde::Deserialize;
use serde_json::{Map, Value};

/// The whole spec file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Version of the spec file format (this crate understands 1).
    pub spec_format: u32,
    /// Protocol name, `felix-wire`.
    pub protocol: String,
    /// Protocol version, carried in every frame header.
    pub protocol_version: u16,
    /// One paragraph describing the protocol.
    pub doc: String,
    /// The fixed frame header.
    pub header: HeaderDef,
    /// Flag bits of the header's flags field.
    pub flags: Vec<FlagDef>,
    /// OR of every defined flag bit.
    pub known_flags: u16,
    /// What a peer that advertises nothing is assumed to support.
    pub original_v1_flags: u16,
    /// Every valid flags value and the payload layout it selects.
    pub combinations: Vec<CombinationDef>,
    /// Named numeric limits.
    pub limits: Vec<LimitDef>,
    /// Enumerations used by messages and layouts.
    pub enums: Vec<EnumDef>,
    /// Language-neutral decode error classes.
    pub error_classes: Vec<ErrorClassDef>,
    /// JSON messages (flags 0).
    pub messages: Vec<MessageDef>,
    /// Binary payload layouts.
    pub layouts: Vec<LayoutDef>,
}

/// The fixed frame header.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderDef {
    /// Header size in bytes.
    pub size: usize,
    /// Magic number.
    pub magic: u32,
    /// The magic as ASCII, for documentation.
    pub magic_ascii: String,
    /// Version number carried in every header.
    pub version: u16,
    /// Byte order of every integer on the wire.
    pub byte_order: ByteOrder,
    /// Header fields in wire order.
    pub fields: Vec<HeaderFieldDef>,
}

/// Byte order of integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByteOrder {
    /// Network byte order.
    BigEndian,
}

/// One header field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderFieldDef {
    /// Field name.
    pub name: String,
    /// `u16` or `u32`.
    #[serde(rename = "type")]
    pub ty: String,
    /// What the field means.
    pub doc: String,
}

/// One flag bit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagDef {
    /// SCREAMING_CASE name.
    pub name: String,
    /// The bit value (a single bit).
    pub bit: u16,
    /// Whether the bit selects a layout or modifies one.
    pub role: FlagRole,
    /// For modifiers: the layout flags this bit may accompany.
    #[serde(default)]
    pub modifies: Vec<String>,
    /// What the bit means.
    pub doc: String,
}

/// The role of a flag bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagRole {
    /// Selects a payload layout.
    Layout,
    /// Changes a layout selected by another bit.
    Modifier,
}

/// One valid flags value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CombinationDef {
    /// Names of the bits set (empty for JSON).
    pub flags: Vec<String>,
    /// `json` or a layout name.
    pub layout: String,
}

/// A named limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitDef {
    /// snake_case name.
    pub name: String,
    /// The value.
    pub value: u64,
    /// What it limits and why.
    pub doc: String,
}

/// An enumeration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnumDef {
    /// CamelCase name.
    pub name: String,
    /// What it is.
    pub doc: String,
    /// Its values.
    pub variants: Vec<VariantDef>,
}

/// One enum value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantDef {
    /// snake_case name (also its name in vectors).
    pub name: String,
    /// JSON string form, if it has one.
    #[serde(default)]
    pub json: Option<String>,
    /// JSON object form `{"key": value}`, if it has one.
    #[serde(default)]
    pub json_object: Option<JsonObjectVariant>,
    /// Binary byte, if it has one.
    #[serde(default)]
    pub byte: Option<u8>,
    /// What it means.
    pub doc: String,
}

/// A variant written as a one-key JSON object.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonObjectVariant {
    /// The object's only key.
    pub key: String,
    /// Type of its value (`u64`).
    #[serde(rename = "type")]
    pub ty: String,
}

/// A decode error class.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorClassDef {
    /// snake_case name used in vectors.
    pub name: String,
    /// When a decoder reports it.
    pub doc: String,
}

/// Who sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to broker.
    ClientToBroker,
    /// Broker to client.
    BrokerToClient,
}

/// A JSON message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageDef {
    /// The `type` value.
    pub name: String,
    /// Who sends it.
    pub direction: Direction,
    /// What it does.
    pub doc: String,
    /// Fields after `type`, in wire order.
    pub fields: Vec<JsonFieldDef>,
    /// Examples; each becomes a positive vector.
    pub examples: Vec<ExampleDef>,
}

/// How a JSON field is written and read when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Always written; required on decode; null is a wrong type.
    Required,
    /// Left out when absent; missing or null decode as absent.
    Omit,
    /// Always written, `null` when absent; missing or null decode as absent.
    Null,
    /// Always written, `null` when absent; the key is required on decode.
    Nullable,
}

impl Presence {
    /// The rule's name in the spec (`required`, `omit`, `null`, `nullable`).
    pub fn name(&self) -> &'static str {
        match self {
            Presence::Required => "required",
            Presence::Omit => "omit",
            Presence::Null => "null",
            Presence::Nullable => "nullable",
        }
    }
}

impl std::fmt::Display for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One JSON field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonFieldDef {
    /// Key.
    pub name: String,
    /// `string`, `u16`, `u64`, `bytes`, `list<bytes>` or an enum name.
    #[serde(rename = "type")]
    pub ty: String,
    /// Presence rule.
    pub presence: Presence,
    /// What the field means.
    #[serde(default)]
    pub doc: Option<String>,
}

/// A binary payload layout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutDef {
    /// snake_case name.
    pub name: String,
    /// Who sends it.
    pub direction: Direction,
    /// What it carries.
    pub doc: String,
    /// Fields in wire order.
    pub fields: Vec<BinFieldDef>,
    /// Examples; each becomes a positive vector.
    pub examples: Vec<ExampleDef>,
}

/// One binary field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinFieldDef {
    /// Name.
    pub name: String,
    /// `u8`, `u16`, `u32`, `u64`, `str16`, `bytes32` or an enum with bytes.
    #[serde(rename = "type")]
    pub ty: String,
    /// This field counts the items of that later list field.
    #[serde(default)]
    pub count_of: Option<String>,
    /// This field is a list whose length is that earlier count field.
    #[serde(default)]
    pub repeat: Option<String>,
    /// Present only when this modifier flag is set.
    #[serde(default)]
    pub present_if: Option<String>,
    /// Writers cut the field to this limit (a limit name).
    #[serde(default)]
    pub max_bytes_limit: Option<String>,
    /// What the field means.
    #[serde(default)]
    pub doc: Option<String>,
}

/// An example value of a message or layout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExampleDef {
    /// Name, unique within its message or layout; part of the vector id.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub comment: Option<String>,
    /// Non-canonical input that must decode to `fields` (JSON only).
    #[serde(default)]
    pub decode_only: bool,
    /// Field values in the neutral form (bytes as hex).
    pub fields: Map<String, Value>,
    /// Exact JSON payload text (JSON messages).
    #[serde(default)]
    pub json: Option<String>,
    /// Exact payload bytes as hex, whitespace ignored (layouts).
    #[serde(default)]
    pub payload_hex: Option<String>,
}
