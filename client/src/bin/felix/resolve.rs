//! `--addr` to socket addresses: host names resolved (the system
//! resolver, through tokio), each name's addresses kept in the order the
//! resolver gives them, so the client tries them in turn.

use std::net::SocketAddr;

/// Every address of every `host:port`, in order, without duplicates.
pub(crate) async fn resolve_all(addrs: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        let found = tokio::net::lookup_host(a.as_str())
            .await
            .map_err(|e| format!("--addr {a}: cannot resolve the host name: {e}"))?;
        for addr in found {
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "--addr {}: resolves to no address",
            addrs.join(",")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_and_literals_resolve_in_order() {
        let got = resolve_all(&[
            "10.0.0.1:7000".into(),
            "localhost:5000".into(),
            "10.0.0.1:7000".into(),
        ])
        .await
        .expect("resolves");
        assert_eq!(
            got[0],
            "10.0.0.1:7000".parse::<SocketAddr>().expect("literal")
        );
        assert!(
            got[1..]
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 5000),
            "{got:?}"
        );
        assert_eq!(
            got.len(),
            got.iter().collect::<std::collections::HashSet<_>>().len()
        );
    }

    #[tokio::test]
    async fn an_unknown_host_names_the_flag() {
        let e = resolve_all(&["no-such-host.invalid:5000".into()])
            .await
            .expect_err("does not resolve");
        assert!(
            e.starts_with("--addr no-such-host.invalid:5000: cannot resolve"),
            "{e}"
        );
    }
}
