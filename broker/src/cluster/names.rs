//! NATS names for felix names, safe by construction.
//!
//! Felix names are any UTF-8 up to `max_name_bytes` (1 KiB by default),
//! while NATS subjects split on `.`, match on `*` and `>`, end at
//! whitespace, and stream names and KV keys allow fewer characters still.
//! So no felix name is ever put into a NATS name: each scope is hashed
//! (SHA-256 over length-prefixed fields, so `("a.b", "c")` and `("a",
//! "b.c")` differ) and written as 32 hex digits (128 bits). The names are
//! short and fixed-length, whatever the input, and nothing a client sends
//! can inject a token or a wildcard. The cache keeps the full scope in
//! each value and checks it on read, so even a hash collision reads as a
//! miss, never as another tenant's value.

use sha2::{Digest, Sha256};

use crate::core::cache::CacheKey;
use crate::core::pubsub::StreamKey;

/// The length-prefixed fields of a scope: what is hashed, and what the
/// cache stores beside each value.
pub(crate) fn scope_bytes(fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

fn digest(fields: &[&str]) -> String {
    let hash = Sha256::digest(scope_bytes(fields));
    hex_lower(&hash[..16])
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Names of one felix stream's JetStream stream and subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamNames {
    /// `{prefix}_S_{hash}`.
    pub(crate) stream: String,
    /// `{prefix}.s.{hash}`.
    pub(crate) subject: String,
}

/// The JetStream names for a felix stream; `prefix` is checked at startup
/// ([`valid_prefix`]).
pub(crate) fn stream_names(prefix: &str, key: &StreamKey) -> StreamNames {
    let hash = digest(&[&key.tenant, &key.namespace, &key.stream]);
    StreamNames {
        stream: format!("{prefix}_S_{hash}"),
        subject: format!("{prefix}.s.{hash}"),
    }
}

/// The name of the JetStream stream that backs felix stream `key` under
/// `prefix` (`{prefix}_S_{hash}`): for operators and tests that look at
/// a stream with NATS's own tools (`nats stream info NAME`).
pub fn jetstream_stream_name(prefix: &str, key: &StreamKey) -> String {
    stream_names(prefix, key).stream
}

/// The KV bucket of the cache: one for all tenants, with scoped keys.
pub(crate) fn cache_bucket(prefix: &str) -> String {
    format!("{prefix}_cache")
}

/// The KV key of a cache entry.
pub(crate) fn cache_key(key: &CacheKey) -> String {
    digest(&[&key.tenant, &key.namespace, &key.cache, &key.key])
}

/// Whether a name prefix is usable in stream names, subjects and bucket
/// names: ASCII letters, digits, `-` and `_`, 1 to 32 of them.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    (1..=32).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str, namespace: &str, stream: &str) -> StreamKey {
        StreamKey {
            tenant: tenant.into(),
            namespace: namespace.into(),
            stream: stream.into(),
        }
    }

    #[test]
    fn hostile_names_cannot_reach_the_subject_syntax() {
        for name in [
            "orders",
            "a.b",
            "*",
            ">",
            "a.>",
            "x y",
            "tab\there",
            "new\nline",
            "",
            "ünï",
            &"long".repeat(300),
        ] {
            let n = stream_names("felix", &key("t1", "default", name));
            let hash = n.subject.strip_prefix("felix.s.").expect("prefix");
            assert_eq!(hash.len(), 32, "{name:?}");
            assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{name:?}");
            assert_eq!(n.stream, format!("felix_S_{hash}"));
        }
    }

    #[test]
    fn field_boundaries_are_part_of_the_name() {
        let a = stream_names("f", &key("t", "a.b", "c"));
        let b = stream_names("f", &key("t", "a", "b.c"));
        let c = stream_names("f", &key("t", "ab", "c"));
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert_eq!(a, stream_names("f", &key("t", "a.b", "c")));
        let k = |key: &str| CacheKey {
            tenant: "t".into(),
            namespace: "n".into(),
            cache: "c".into(),
            key: key.into(),
        };
        assert_ne!(cache_key(&k("a.b")), cache_key(&k("a>b")));
        assert!(cache_key(&k("*")).bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(valid_prefix("felix"));
        assert!(valid_prefix("prod-eu_1"));
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(33)] {
            assert!(!valid_prefix(bad), "{bad:?}");
        }
    }
}
