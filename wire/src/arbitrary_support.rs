//! `arbitrary` adapters for `bytes::Bytes`, which has no `Arbitrary` impl.

use arbitrary::{Result, Unstructured};
use bytes::Bytes;

/// An arbitrary `Bytes`.
pub(crate) fn bytes(u: &mut Unstructured<'_>) -> Result<Bytes> {
    Ok(Bytes::from(u.arbitrary::<Vec<u8>>()?))
}

/// An arbitrary optional `Bytes`.
pub(crate) fn opt_bytes(u: &mut Unstructured<'_>) -> Result<Option<Bytes>> {
    Ok(u.arbitrary::<Option<Vec<u8>>>()?.map(Bytes::from))
}

/// An arbitrary list of `Bytes`.
pub(crate) fn bytes_list(u: &mut Unstructured<'_>) -> Result<Vec<Bytes>> {
    Ok(u.arbitrary::<Vec<Vec<u8>>>()?
        .into_iter()
        .map(Bytes::from)
        .collect())
}

/// An arbitrary text of at most `MAX` bytes, for a field every writer cuts
/// to `MAX` (so an arbitrary value survives encode -> decode unchanged).
pub(crate) fn str_max<const MAX: u32>(u: &mut Unstructured<'_>) -> Result<String> {
    let text = u.arbitrary::<String>()?;
    Ok(crate::binary::truncate_utf8(&text, MAX as usize).to_owned())
}
