//! Requests on an authenticated stream, one handler per command (as
//! mini-redis keeps one file per command). Each handler checks scope and
//! permission, acts on the core, and returns its result or a typed
//! [`RequestError`] whose `Display` is the text the client is sent; the
//! session ([`super::session`]) turns either into reply frames.
//!
//! - [`publish`]: the four publish frame kinds, normalised into one
//!   [`PublishRequest`], and the ack each kind gets;
//! - [`subscribe`]: start positions and cursor errors;
//! - [`cache`]: puts and gets.

mod cache;
mod publish;
mod subscribe;

use std::sync::atomic::Ordering;

pub use cache::CACHE_VALUE_GROWTH;
pub use publish::{PublishRequest, Sorted};

use super::auth::AuthContext;
use super::cache::CacheRejected;
use super::perms::Action;
use super::pubsub::{PublishError, SubscribeError};
use super::Core;

/// A stream's state once it has authenticated: who it is and which flags
/// the broker may use towards it.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The authenticated tenant and permissions.
    pub ctx: AuthContext,
    /// Flags negotiated at auth.
    pub flags: u16,
}

/// Why a request was refused. `Display` is the text sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request names another tenant than the stream authenticated as.
    #[error("tenant mismatch")]
    TenantMismatch,
    /// The credential does not allow this action on this scope.
    #[error("permission denied: {action} on {tenant}/{namespace}/{name}")]
    PermissionDenied {
        /// What was asked.
        action: Action,
        /// Tenant.
        tenant: String,
        /// Namespace.
        namespace: String,
        /// Stream or cache.
        name: String,
    },
    /// A name is longer than `max_name_bytes`.
    #[error("name too long: {field} is {len} bytes; names are at most {max} bytes")]
    NameTooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream's credential (a JWT) expired after it authenticated.
    #[error("token expired")]
    TokenExpired,
    /// An acked JSON publish without a request id.
    #[error("missing request_id for acked publish")]
    MissingRequestId,
    /// A second subscribe on one control stream.
    #[error("already subscribed on this stream")]
    AlreadySubscribed,
    /// The cache was not declared (and caches are not auto-created).
    #[error("cache scope not found: {tenant}/{namespace}/{cache}")]
    CacheNotFound {
        /// Tenant.
        tenant: String,
        /// Namespace.
        namespace: String,
        /// Cache.
        cache: String,
    },
    /// The value could not be read back: its `cache_value` reply could
    /// pass the frame cap.
    #[error(
        "cache value too large: its cache_value reply could be {len} bytes, over the frame cap of {max}"
    )]
    CacheValueOverCap {
        /// The largest reply this put could lead to.
        len: usize,
        /// The frame cap.
        max: usize,
    },
    /// The publish was refused.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The subscribe was refused.
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    /// The cache refused the entry.
    #[error(transparent)]
    Cache(#[from] CacheRejected),
    /// Cluster mode: NATS could not carry the request out.
    #[error(transparent)]
    Backplane(#[from] super::forward::BackplaneError),
}

impl Ready {
    /// Checks names, tenant and permission for a request on a scope.
    fn authorize(
        &self,
        core: &Core,
        action: Action,
        tenant: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), RequestError> {
        check_names(
            core,
            &[
                ("tenant_id", tenant),
                ("namespace", namespace),
                ("name", name),
            ],
        )?;
        if tenant != self.ctx.tenant {
            core.metrics
                .permission_denied
                .fetch_add(1, Ordering::Relaxed);
            return Err(RequestError::TenantMismatch);
        }
        if !self.ctx.permissions.allows(action, tenant, namespace, name) {
            core.metrics
                .permission_denied
                .fetch_add(1, Ordering::Relaxed);
            return Err(RequestError::PermissionDenied {
                action,
                tenant: tenant.into(),
                namespace: namespace.into(),
                name: name.into(),
            });
        }
        Ok(())
    }
}

/// Refuses names over `max_name_bytes`: each is kept (a stream's key, a
/// cache key) or echoed in errors, so its length is bounded like any
/// other buffer a peer can make the broker hold.
fn check_names(core: &Core, names: &[(&'static str, &str)]) -> Result<(), RequestError> {
    let max = core.settings.max_name_bytes;
    match names.iter().find(|(_, n)| n.len() > max) {
        Some((field, n)) => {
            core.metrics.names_too_long.fetch_add(1, Ordering::Relaxed);
            Err(RequestError::NameTooLong {
                field,
                len: n.len(),
                max,
            })
        }
        None => Ok(()),
    }
}
