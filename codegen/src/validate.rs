//! Semantic checks of a parsed spec.
//!
//! serde already rejected unknown keys and wrong scalar types; this module
//! checks what a schema cannot: unique names, single and non-overlapping
//! bits, references to flags, enums, limits and fields that exist (and, for
//! counts, that are defined before use), and examples that fit their
//! message. Every problem is reported, not just the first, each with the
//! file, line and column of the node at fault.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde_json::Value;

use crate::locate::{locate, Position, Step};
use crate::spec::{ExampleDef, FlagRole, Presence, Spec};

/// One problem in the spec, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the spec file as given.
    pub file: String,
    /// Line and column of the node at fault.
    pub at: Position,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.at.line, self.at.column, self.message
        )
    }
}

/// Limits the generated runtime refers to by name.
pub const REQUIRED_LIMITS: &[&str] = &[
    "default_max_frame_bytes",
    "error_text_max_bytes",
    "json_max_depth",
];

/// Error classes the hand-written runtime reports.
pub const REQUIRED_ERROR_CLASSES: &[&str] = &[
    "incomplete",
    "bad_magic",
    "bad_version",
    "unknown_flags",
    "invalid_flag_combination",
    "frame_too_large",
    "unexpected_end",
    "count_too_large",
    "trailing_bytes",
    "invalid_utf8",
    "invalid_enum_byte",
    "malformed_json",
    "unknown_type",
    "missing_field",
    "duplicate_field",
    "wrong_type",
    "out_of_range",
    "invalid_enum_value",
    "invalid_base64",
];

const JSON_SCALARS: &[&str] = &["string", "u16", "u64", "bytes", "list<bytes>"];
const BIN_SCALARS: &[&str] = &["u8", "u16", "u32", "u64", "str16", "bytes32"];

struct Checker<'a> {
    file: &'a str,
    source: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, path: &[Step<'_>], message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_string(),
            at: locate(self.source, path),
            message: message.into(),
        });
    }

    /// Reports every name that occurs twice under `section`.
    fn unique<'n>(
        &mut self,
        section: &[Step<'_>],
        what: &str,
        names: impl Iterator<Item = &'n str>,
    ) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for name in names {
            let n = seen.entry(name).or_default();
            if *n > 0 {
                let mut path = section.to_vec();
                path.push(Step::NamedNth(name, *n));
                self.report(&path, format!("duplicate {what} name `{name}`"));
            }
            *n += 1;
        }
    }
}

fn is_snake(name: &str) -> bool {
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Checks `spec` (parsed from `source`, read from `file`).
pub fn validate(spec: &Spec, file: &str, source: &str) -> Vec<Problem> {
    let mut c = Checker {
        file,
        source,
        problems: Vec::new(),
    };
    check_header(&mut c, spec);
    check_flags(&mut c, spec);
    check_limits_and_classes(&mut c, spec);
    check_enums(&mut c, spec);
    check_messages(&mut c, spec);
    check_layouts(&mut c, spec);
    c.problems
}

fn check_header(c: &mut Checker<'_>, spec: &Spec) {
    if spec.spec_format != 1 {
        c.report(
            &[Step::Key("spec_format")],
            format!(
                "spec_format {} is not supported (this generator reads 1)",
                spec.spec_format
            ),
        );
    }
    if spec.header.version != spec.protocol_version {
        c.report(
            &[Step::Key("header"), Step::Key("version")],
            "header.version must equal protocol_version",
        );
    }
    if spec.header.magic.to_be_bytes() != spec.header.magic_ascii.as_bytes() {
        c.report(
            &[Step::Key("header"), Step::Key("magic_ascii")],
            format!(
                "magic_ascii `{}` does not spell magic {:#010x}",
                spec.header.magic_ascii, spec.header.magic
            ),
        );
    }
    let expected = [
        ("magic", "u32"),
        ("version", "u16"),
        ("flags", "u16"),
        ("length", "u32"),
    ];
    let got: Vec<(&str, &str)> = spec
        .header
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.ty.as_str()))
        .collect();
    if got != expected {
        c.report(
            &[Step::Key("header"), Step::Key("fields")],
            "header fields must be magic u32, version u16, flags u16, length u32, in that order",
        );
    }
    if spec.header.size != 12 {
        c.report(
            &[Step::Key("header"), Step::Key("size")],
            format!(
                "header size {} does not match its fields (12 bytes)",
                spec.header.size
            ),
        );
    }
}

fn check_flags(c: &mut Checker<'_>, spec: &Spec) {
    c.unique(
        &[Step::Key("flags")],
        "flag",
        spec.flags.iter().map(|f| f.name.as_str()),
    );
    let mut union = 0u16;
    for f in &spec.flags {
        let at = [Step::Key("flags"), Step::Named(&f.name), Step::Key("bit")];
        if f.bit.count_ones() != 1 {
            c.report(
                &at,
                format!(
                    "flag `{}` bit {:#06x} must be exactly one bit",
                    f.name, f.bit
                ),
            );
        } else if union & f.bit != 0 {
            c.report(
                &at,
                format!("flag `{}` bit {:#06x} overlaps another flag", f.name, f.bit),
            );
        }
        union |= f.bit;
        match f.role {
            FlagRole::Layout if !f.modifies.is_empty() => {
                c.report(
                    &[
                        Step::Key("flags"),
                        Step::Named(&f.name),
                        Step::Key("modifies"),
                    ],
                    format!("layout flag `{}` cannot modify other flags", f.name),
                );
            }
            FlagRole::Modifier if f.modifies.is_empty() => {
                c.report(
                    &[Step::Key("flags"), Step::Named(&f.name)],
                    format!("modifier flag `{}` must list the flags it modifies", f.name),
                );
            }
            _ => {}
        }
        for m in &f.modifies {
            if !spec
                .flags
                .iter()
                .any(|g| &g.name == m && g.role == FlagRole::Layout)
            {
                c.report(
                    &[
                        Step::Key("flags"),
                        Step::Named(&f.name),
                        Step::Key("modifies"),
                    ],
                    format!(
                        "flag `{}` modifies `{m}`, which is not a layout flag",
                        f.name
                    ),
                );
            }
        }
    }
    if spec.known_flags != union {
        c.report(
            &[Step::Key("known_flags")],
            format!(
                "known_flags {:#06x} differs from the union of the flag bits {union:#06x}",
                spec.known_flags
            ),
        );
    }
    if spec.original_v1_flags & !union != 0 {
        c.report(
            &[Step::Key("original_v1_flags")],
            "original_v1_flags has bits no flag defines",
        );
    }
    let mut values = BTreeSet::new();
    for (i, combo) in spec.combinations.iter().enumerate() {
        let at = [Step::Key("combinations"), Step::Key("layout")];
        let mut value = 0u16;
        let mut layout_bits = 0;
        for name in &combo.flags {
            match spec.flags.iter().find(|f| &f.name == name) {
                Some(f) => {
                    value |= f.bit;
                    if f.role == FlagRole::Layout {
                        layout_bits += 1;
                    }
                    if f.role == FlagRole::Modifier
                        && !f.modifies.iter().any(|m| combo.flags.contains(m))
                    {
                        c.report(
                            &at,
                            format!(
                                "combination {i}: modifier `{name}` without a flag it modifies"
                            ),
                        );
                    }
                }
                None => c.report(&at, format!("combination {i}: unknown flag `{name}`")),
            }
        }
        if layout_bits > 1 {
            c.report(&at, format!("combination {i}: more than one layout flag"));
        }
        if !values.insert(value) {
            c.report(
                &at,
                format!("combination {i}: flags value {value:#06x} listed twice"),
            );
        }
        let known_layout =
            combo.layout == "json" || spec.layouts.iter().any(|l| l.name == combo.layout);
        if !known_layout {
            c.report(
                &at,
                format!("combination {i}: unknown layout `{}`", combo.layout),
            );
        }
        if (combo.layout == "json") != combo.flags.is_empty() {
            c.report(
                &at,
                format!("combination {i}: the json layout is exactly the empty flag set"),
            );
        }
    }
}

fn check_limits_and_classes(c: &mut Checker<'_>, spec: &Spec) {
    c.unique(
        &[Step::Key("limits")],
        "limit",
        spec.limits.iter().map(|l| l.name.as_str()),
    );
    for name in REQUIRED_LIMITS {
        if !spec.limits.iter().any(|l| l.name == *name) {
            c.report(
                &[Step::Key("limits")],
                format!("limit `{name}` is required by the wire runtime"),
            );
        }
    }
    c.unique(
        &[Step::Key("error_classes")],
        "error class",
        spec.error_classes.iter().map(|e| e.name.as_str()),
    );
    for name in REQUIRED_ERROR_CLASSES {
        if !spec.error_classes.iter().any(|e| e.name == *name) {
            c.report(
                &[Step::Key("error_classes")],
                format!("error class `{name}` is reported by the wire runtime and must be listed"),
            );
        }
    }
    for e in &spec.error_classes {
        if !REQUIRED_ERROR_CLASSES.contains(&e.name.as_str()) {
            c.report(
                &[Step::Key("error_classes"), Step::Named(&e.name)],
                format!(
                    "error class `{}` is never reported by the wire runtime",
                    e.name
                ),
            );
        }
    }
}

fn check_enums(c: &mut Checker<'_>, spec: &Spec) {
    c.unique(
        &[Step::Key("enums")],
        "enum",
        spec.enums.iter().map(|e| e.name.as_str()),
    );
    for e in &spec.enums {
        let base = [Step::Key("enums"), Step::Named(&e.name)];
        c.unique(
            &[base[0], base[1], Step::Key("variants")],
            "variant",
            e.variants.iter().map(|v| v.name.as_str()),
        );
        let mut bytes = BTreeSet::new();
        let mut jsons = BTreeSet::new();
        for v in &e.variants {
            let at = [
                base[0],
                base[1],
                Step::Key("variants"),
                Step::Named(&v.name),
            ];
            if !is_snake(&v.name) {
                c.report(&at, format!("variant name `{}` must be snake_case", v.name));
            }
            if v.json.is_some() && v.json_object.is_some() {
                c.report(
                    &at,
                    "a variant has a json string or a json_object, not both",
                );
            }
            if let Some(o) = &v.json_object {
                if o.ty != "u64" {
                    c.report(
                        &at,
                        format!("json_object value type `{}` is not supported (u64)", o.ty),
                    );
                }
            }
            if v.json.is_none() && v.json_object.is_none() && v.byte.is_none() {
                c.report(
                    &at,
                    "a variant needs a json form, a json_object form or a byte",
                );
            }
            if let Some(b) = v.byte {
                if !bytes.insert(b) {
                    c.report(&at, format!("byte {b} is used twice"));
                }
            }
            if let Some(j) = &v.json {
                if !jsons.insert(j.clone()) {
                    c.report(&at, format!("json form `{j}` is used twice"));
                }
            }
        }
    }
}

fn check_messages(c: &mut Checker<'_>, spec: &Spec) {
    c.unique(
        &[Step::Key("messages")],
        "message",
        spec.messages.iter().map(|m| m.name.as_str()),
    );
    for m in &spec.messages {
        let base = [Step::Key("messages"), Step::Named(&m.name)];
        if !is_snake(&m.name) {
            c.report(
                &base,
                format!("message name `{}` must be snake_case", m.name),
            );
        }
        c.unique(
            &[base[0], base[1], Step::Key("fields")],
            "field",
            m.fields.iter().map(|f| f.name.as_str()),
        );
        for f in &m.fields {
            let at = [
                base[0],
                base[1],
                Step::Key("fields"),
                Step::Named(&f.name),
                Step::Key("type"),
            ];
            if f.name == "type" {
                c.report(&at, "`type` is the message tag and cannot be a field");
            }
            let is_enum = spec.enums.iter().any(|e| {
                e.name == f.ty
                    && e.variants
                        .iter()
                        .all(|v| v.json.is_some() || v.json_object.is_some())
            });
            if !JSON_SCALARS.contains(&f.ty.as_str()) && !is_enum {
                c.report(&at, format!("unknown JSON type `{}` (expected one of {}, or an enum whose variants all have a JSON form)", f.ty, JSON_SCALARS.join(", ")));
            }
        }
        c.unique(
            &[base[0], base[1], Step::Key("examples")],
            "example",
            m.examples.iter().map(|e| e.name.as_str()),
        );
        if m.examples.is_empty() {
            c.report(
                &base,
                format!("message `{}` needs at least one example", m.name),
            );
        }
        for ex in &m.examples {
            let at = [
                base[0],
                base[1],
                Step::Key("examples"),
                Step::Named(&ex.name),
            ];
            let fields: Vec<(&str, &str, bool)> = m
                .fields
                .iter()
                .map(|f| {
                    (
                        f.name.as_str(),
                        f.ty.as_str(),
                        f.presence == Presence::Required,
                    )
                })
                .collect();
            check_example(c, spec, &at, ex, &fields);
            if ex.json.is_none() {
                c.report(&at, "a message example needs its exact `json` text");
            }
            if ex.payload_hex.is_some() {
                c.report(
                    &at,
                    "`payload_hex` belongs to layout examples; message examples use `json`",
                );
            }
        }
    }
}

fn check_layouts(c: &mut Checker<'_>, spec: &Spec) {
    c.unique(
        &[Step::Key("layouts")],
        "layout",
        spec.layouts.iter().map(|l| l.name.as_str()),
    );
    for l in &spec.layouts {
        let base = [Step::Key("layouts"), Step::Named(&l.name)];
        if !is_snake(&l.name) {
            c.report(
                &base,
                format!("layout name `{}` must be snake_case", l.name),
            );
        }
        if spec.messages.iter().any(|m| m.name == l.name) || l.name == "json" {
            c.report(
                &base,
                format!("layout name `{}` is also a message name", l.name),
            );
        }
        let combos: Vec<_> = spec
            .combinations
            .iter()
            .filter(|k| k.layout == l.name)
            .collect();
        if combos.is_empty() {
            c.report(
                &base,
                format!("layout `{}` is selected by no combination", l.name),
            );
        }
        c.unique(
            &[base[0], base[1], Step::Key("fields")],
            "field",
            l.fields.iter().map(|f| f.name.as_str()),
        );
        for (i, f) in l.fields.iter().enumerate() {
            let at = [base[0], base[1], Step::Key("fields"), Step::Named(&f.name)];
            let is_enum = spec
                .enums
                .iter()
                .any(|e| e.name == f.ty && e.variants.iter().any(|v| v.byte.is_some()));
            if !BIN_SCALARS.contains(&f.ty.as_str()) && !is_enum {
                c.report(&at, format!("unknown binary type `{}` (expected one of {}, or an enum with byte values)", f.ty, BIN_SCALARS.join(", ")));
            }
            if let Some(list) = &f.count_of {
                if !matches!(f.ty.as_str(), "u16" | "u32") {
                    c.report(&at, "a count field must be u16 or u32");
                }
                match l.fields.iter().position(|g| &g.name == list) {
                    Some(j) if j > i && l.fields[j].repeat.as_deref() == Some(f.name.as_str()) => {}
                    Some(j) if j > i => c.report(
                        &at,
                        format!(
                            "count `{}` counts `{list}`, which does not repeat by it",
                            f.name
                        ),
                    ),
                    Some(_) => c.report(
                        &at,
                        format!(
                            "count `{}` must come before the list `{list}` it counts",
                            f.name
                        ),
                    ),
                    None => c.report(
                        &at,
                        format!("count `{}` counts unknown field `{list}`", f.name),
                    ),
                }
            }
            if let Some(count) = &f.repeat {
                match l.fields.iter().position(|g| &g.name == count) {
                    Some(j)
                        if j < i && l.fields[j].count_of.as_deref() == Some(f.name.as_str()) => {}
                    Some(j) if j < i => c.report(
                        &at,
                        format!(
                            "list `{}` repeats by `{count}`, which is not its count_of field",
                            f.name
                        ),
                    ),
                    Some(_) => c.report(
                        &at,
                        format!(
                            "list `{}` references `{count}` before it is defined",
                            f.name
                        ),
                    ),
                    None => c.report(
                        &at,
                        format!("list `{}` repeats by unknown field `{count}`", f.name),
                    ),
                }
            }
            if let Some(flag) = &f.present_if {
                let ok = spec
                    .flags
                    .iter()
                    .any(|g| &g.name == flag && g.role == FlagRole::Modifier)
                    && combos.iter().any(|k| k.flags.contains(flag))
                    && combos.iter().any(|k| !k.flags.contains(flag));
                if !ok {
                    c.report(&at, format!("present_if `{flag}` must be a modifier flag that some, not all, combinations of this layout set"));
                }
            }
            if let Some(limit) = &f.max_bytes_limit {
                if !spec.limits.iter().any(|g| &g.name == limit) {
                    c.report(&at, format!("unknown limit `{limit}`"));
                }
            }
        }
        for ex in &l.examples {
            let at = [
                base[0],
                base[1],
                Step::Key("examples"),
                Step::Named(&ex.name),
            ];
            let fields: Vec<(&str, &str, bool)> = l
                .fields
                .iter()
                .filter(|f| f.count_of.is_none())
                .map(|f| {
                    let ty = if f.repeat.is_some() {
                        "list<bytes>"
                    } else {
                        match f.ty.as_str() {
                            "str16" => "string",
                            "bytes32" => "bytes",
                            "u8" | "u32" => "u64",
                            t => t,
                        }
                    };
                    (f.name.as_str(), ty, f.present_if.is_none())
                })
                .collect();
            check_example(c, spec, &at, ex, &fields);
            if ex.json.is_some() || ex.decode_only {
                c.report(
                    &at,
                    "layout examples use `payload_hex`, not `json` or `decode_only`",
                );
            }
        }
        c.unique(
            &[base[0], base[1], Step::Key("examples")],
            "example",
            l.examples.iter().map(|e| e.name.as_str()),
        );
        if l.examples.is_empty() {
            c.report(
                &base,
                format!("layout `{}` needs at least one example", l.name),
            );
        }
    }
}

/// Checks an example's values against (name, type, required) field triples.
fn check_example(
    c: &mut Checker<'_>,
    spec: &Spec,
    at: &[Step<'_>],
    ex: &ExampleDef,
    fields: &[(&str, &str, bool)],
) {
    for key in ex.fields.keys() {
        if !fields.iter().any(|(n, _, _)| n == key) {
            c.report(at, format!("example `{}`: unknown field `{key}`", ex.name));
        }
    }
    for (name, ty, required) in fields {
        match ex.fields.get(*name) {
            None | Some(Value::Null) if *required => c.report(
                at,
                format!("example `{}`: required field `{name}` is missing", ex.name),
            ),
            None | Some(Value::Null) => {}
            Some(v) => {
                if let Err(why) = check_value(spec, ty, v) {
                    c.report(at, format!("example `{}`: field `{name}`: {why}", ex.name));
                }
            }
        }
    }
}

fn check_value(spec: &Spec, ty: &str, v: &Value) -> Result<(), String> {
    let hex_ok = |s: &Value| s.as_str().is_some_and(|s| hex::decode(s).is_ok());
    match ty {
        "string" | "str16" => v
            .as_str()
            .map(|_| ())
            .ok_or_else(|| "expected a string".into()),
        "u16" => v
            .as_u64()
            .filter(|n| *n <= u64::from(u16::MAX))
            .map(|_| ())
            .ok_or_else(|| "expected an integer 0..=65535".into()),
        "u64" => v
            .as_u64()
            .map(|_| ())
            .ok_or_else(|| "expected an integer 0..=2^64-1".into()),
        "bytes" | "bytes32" => hex_ok(v)
            .then_some(())
            .ok_or_else(|| "expected a quoted hex string".into()),
        "list<bytes>" => match v.as_array() {
            Some(items) if items.iter().all(hex_ok) => Ok(()),
            _ => Err("expected a list of quoted hex strings".into()),
        },
        name => {
            let e = spec
                .enums
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| format!("unknown type `{name}`"))?;
            let ok = e.variants.iter().any(|var| match (v, &var.json_object) {
                (Value::String(s), None) => *s == var.name,
                (Value::Object(o), Some(obj)) => {
                    o.len() == 1 && o.get(&obj.key).and_then(Value::as_u64).is_some()
                }
                _ => false,
            });
            ok.then_some(())
                .ok_or_else(|| format!("not a value of enum {name}"))
        }
    }
}
