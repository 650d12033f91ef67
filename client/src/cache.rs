//! The cache: [`Client::cache_put`] and [`Client::cache_get`], JSON
//! requests with a request id on pooled bidirectional streams.

use std::time::Duration;

use bytes::Bytes;
use felix_wire::{CacheGet, CachePut, Frame, Message};

use crate::connection::{Client, PoolKind};
use crate::error::ClientError;
use crate::frames::{describe, encode};
use crate::pool::Expect;

/// `ttl_ms` for a time to live: `None` never expires; a duration is
/// rounded up to whole milliseconds (so only a zero duration expires at
/// once), saturating at `u64::MAX`.
pub(crate) fn ttl_ms(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|t| {
        let ms = t.as_nanos().div_ceil(1_000_000);
        u64::try_from(ms).unwrap_or(u64::MAX)
    })
}

/// The `cache_put` frame.
pub(crate) fn put_frame(
    tenant_id: &str,
    namespace: &str,
    cache: &str,
    key: &str,
    value: &Bytes,
    ttl: Option<Duration>,
    request_id: u64,
) -> Result<Bytes, ClientError> {
    encode(Message::from(CachePut {
        tenant_id: tenant_id.into(),
        namespace: namespace.into(),
        cache: cache.into(),
        key: key.into(),
        value: value.clone(),
        request_id: Some(request_id),
        ttl_ms: ttl_ms(ttl),
    }))
}

/// The `cache_get` frame.
pub(crate) fn get_frame(
    tenant_id: &str,
    namespace: &str,
    cache: &str,
    key: &str,
    request_id: u64,
) -> Result<Bytes, ClientError> {
    encode(Message::from(CacheGet {
        tenant_id: tenant_id.into(),
        namespace: namespace.into(),
        cache: cache.into(),
        key: key.into(),
        request_id: Some(request_id),
    }))
}

/// The value in a `cache_value` reply (`None`: a miss).
pub(crate) fn get_reply(frame: Frame) -> Result<Option<Bytes>, ClientError> {
    match frame {
        Frame::Json(Message::CacheValue(v)) => Ok(v.value),
        other => Err(ClientError::Protocol(format!(
            "unexpected reply to cache_get: {}",
            describe(&other)
        ))),
    }
}

impl Client {
    /// Stores `value` under `key` in `namespace`/`cache`. `ttl`: `None`
    /// never expires, zero expires at once, otherwise whole milliseconds
    /// (rounded up). An unknown cache or a refused permission is
    /// [`ClientError::Broker`].
    pub async fn cache_put(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let tenant = self.config().tenant_id.as_str();
        let build = |request_id| {
            let frame = put_frame(tenant, namespace, cache, key, &value, ttl, request_id)?;
            Ok((frame, Expect::CacheOk))
        };
        // Storing the same value twice is harmless: retried once if the
        // stream died under it.
        self.request(PoolKind::Cache, true, build).await.map(drop)
    }

    /// Reads `key` from `namespace`/`cache`: `None` on a miss (or an
    /// expired entry).
    pub async fn cache_get(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
    ) -> Result<Option<Bytes>, ClientError> {
        let tenant = self.config().tenant_id.as_str();
        let build = |request_id| {
            let frame = get_frame(tenant, namespace, cache, key, request_id)?;
            Ok((frame, Expect::CacheValue))
        };
        get_reply(self.request(PoolKind::Cache, true, build).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use felix_wire::{CacheOk, CacheValue};

    fn json(frame: &Bytes) -> &str {
        std::str::from_utf8(&frame[12..]).expect("utf8")
    }

    #[test]
    fn ttl_is_whole_milliseconds_rounded_up() {
        assert_eq!(ttl_ms(None), None);
        assert_eq!(ttl_ms(Some(Duration::ZERO)), Some(0));
        assert_eq!(ttl_ms(Some(Duration::from_micros(1))), Some(1));
        assert_eq!(ttl_ms(Some(Duration::from_millis(1500))), Some(1500));
        assert_eq!(ttl_ms(Some(Duration::MAX)), Some(u64::MAX));
    }

    #[test]
    fn frames() {
        let put = put_frame(
            "t1",
            "default",
            "sessions",
            "k",
            &Bytes::from_static(b"cached"),
            None,
            5,
        )
        .expect("encode");
        assert_eq!(
            json(&put),
            r#"{"type":"cache_put","tenant_id":"t1","namespace":"default","cache":"sessions","key":"k","value":"Y2FjaGVk","request_id":5,"ttl_ms":null}"#
        );
        let put = put_frame(
            "t1",
            "default",
            "sessions",
            "k",
            &Bytes::new(),
            Some(Duration::from_secs(1)),
            6,
        )
        .expect("encode");
        assert!(
            json(&put).ends_with(r#""request_id":6,"ttl_ms":1000}"#),
            "{}",
            json(&put)
        );
        let get = get_frame("t1", "default", "sessions", "k", 7).expect("encode");
        assert_eq!(
            json(&get),
            r#"{"type":"cache_get","tenant_id":"t1","namespace":"default","cache":"sessions","key":"k","request_id":7}"#
        );
    }

    #[test]
    fn get_replies() {
        let value = |value: Option<&'static [u8]>| {
            Frame::Json(Message::from(CacheValue {
                tenant_id: "t1".into(),
                namespace: "default".into(),
                cache: "sessions".into(),
                key: "k".into(),
                value: value.map(Bytes::from_static),
                request_id: Some(1),
            }))
        };
        assert_eq!(
            get_reply(value(Some(b"v"))).expect("hit"),
            Some(Bytes::from_static(b"v"))
        );
        assert_eq!(get_reply(value(None)).expect("miss"), None);
        assert!(matches!(
            get_reply(Frame::Json(Message::from(CacheOk { request_id: 1 }))),
            Err(ClientError::Protocol(_))
        ));
    }
}
