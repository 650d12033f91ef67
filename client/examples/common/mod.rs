//! What every example needs to reach a broker, from the same environment
//! variables as the `felix` CLI, with the same defaults (a reference
//! broker started with no arguments in the current directory).

use std::net::SocketAddr;

use felix_client::{ClientConfig, Trust};

/// `FELIX_ADDR` (one `host:port`, or several separated by commas: nodes
/// of one cluster), `FELIX_CERT` (the broker's certificate, PEM),
/// `FELIX_TENANT` and `FELIX_TOKEN`.
pub(crate) fn config_from_env() -> Result<ClientConfig, String> {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let addrs = var("FELIX_ADDR", "127.0.0.1:5000")
        .split(',')
        .map(|a| {
            std::net::ToSocketAddrs::to_socket_addrs(a.trim())
                .map_err(|e| format!("FELIX_ADDR: {a:?} is not a broker address: {e}"))?
                .next()
                .ok_or_else(|| format!("FELIX_ADDR: {a:?} resolves to no address"))
        })
        .collect::<Result<Vec<SocketAddr>, String>>()?;
    let (first, others) = addrs.split_first().ok_or("FELIX_ADDR: no broker address")?;
    let cert = var("FELIX_CERT", ".felix/tls/cert.pem");
    Ok(
        ClientConfig::builder(*first, Trust::CertificateFile(cert.into()))
            .failover_addrs(others.iter().copied())
            .credentials(var("FELIX_TENANT", "t1"), var("FELIX_TOKEN", "dev"))
            .build(),
    )
}
