//! Permissions as Felix writes them: `action:kind:tenant/namespace/name`,
//! e.g. `stream.publish:stream:t1/default/*`. Each of the three name parts
//! is a glob where `*` matches any run of characters.

use std::fmt;

/// What a client wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Publish to a stream.
    StreamPublish,
    /// Subscribe to a stream.
    StreamSubscribe,
    /// Read a cache.
    CacheRead,
    /// Write a cache.
    CacheWrite,
}

impl Action {
    /// The action's name in permission strings.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::StreamPublish => "stream.publish",
            Action::StreamSubscribe => "stream.subscribe",
            Action::CacheRead => "cache.read",
            Action::CacheWrite => "cache.write",
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Action::StreamPublish | Action::StreamSubscribe => "stream",
            Action::CacheRead | Action::CacheWrite => "cache",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        [
            Action::StreamPublish,
            Action::StreamSubscribe,
            Action::CacheRead,
            Action::CacheWrite,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One granted permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    action: Action,
    tenant: String,
    namespace: String,
    name: String,
}

/// Why a permission string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid permission {text:?}: {reason} (expected action:kind:tenant/namespace/name, e.g. stream.publish:stream:t1/default/*)")]
pub struct PermissionParseError {
    /// The text.
    pub text: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl std::str::FromStr for Permission {
    type Err = PermissionParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| PermissionParseError {
            text: text.to_string(),
            reason,
        };
        let mut parts = text.splitn(3, ':');
        let (Some(action), Some(kind), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(err("needs three ':'-separated parts"));
        };
        let action = Action::parse(action).ok_or_else(|| err("unknown action"))?;
        if kind != action.kind() {
            return Err(err("the kind does not match the action"));
        }
        let segs: Vec<&str> = path.split('/').collect();
        let [tenant, namespace, name] = segs[..] else {
            return Err(err("the path needs tenant/namespace/name"));
        };
        Ok(Permission {
            action,
            tenant: tenant.into(),
            namespace: namespace.into(),
            name: name.into(),
        })
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run.
pub fn glob(pattern: &str, text: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(head) else {
        return false;
    };
    let mut parts = rest.split('*').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return remaining.ends_with(part);
        }
        match remaining.find(part) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// What an authenticated stream may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permissions {
    /// Everything within the authenticated tenant (dev mode).
    AllInTenant,
    /// Only what these grant.
    Granted(Vec<Permission>),
}

impl Permissions {
    /// Whether `action` on `tenant/namespace/name` is allowed.
    pub fn allows(&self, action: Action, tenant: &str, namespace: &str, name: &str) -> bool {
        match self {
            Permissions::AllInTenant => true,
            Permissions::Granted(list) => list.iter().any(|p| {
                p.action == action
                    && glob(&p.tenant, tenant)
                    && glob(&p.namespace, namespace)
                    && glob(&p.name, name)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("t1", "t1"));
        assert!(!glob("t1", "t10"));
        assert!(glob("ord*", "orders"));
        assert!(glob("*ers", "orders"));
        assert!(glob("o*d*s", "orders"));
        assert!(!glob("o*x*s", "orders"));
    }

    #[test]
    fn felix_permission_strings() {
        let p: Permission = "stream.publish:stream:t1/default/*"
            .parse()
            .expect("parses");
        let perms = Permissions::Granted(vec![p]);
        assert!(perms.allows(Action::StreamPublish, "t1", "default", "orders"));
        assert!(!perms.allows(Action::StreamSubscribe, "t1", "default", "orders"));
        assert!(!perms.allows(Action::StreamPublish, "t2", "default", "orders"));
        assert!(!perms.allows(Action::StreamPublish, "t1", "other", "orders"));
        assert!("cache.read:stream:t1/a/b".parse::<Permission>().is_err());
        assert!("cache.read:cache:t1/a".parse::<Permission>().is_err());
        assert!("cache.fly:cache:t1/a/b".parse::<Permission>().is_err());
    }
}
