//! What the client's integration tests share.

use std::time::Duration;

use felix_broker::core::CoreSettings;
use felix_broker::embedded::{EmbeddedBroker, EmbeddedConfig};

/// An embedded broker at the defaults, but delivering each publish at once
/// (no batch linger), so tests see events without waiting for company.
pub(crate) fn broker() -> EmbeddedBroker {
    EmbeddedConfig {
        core: CoreSettings {
            batch_linger: Duration::ZERO,
            ..CoreSettings::default()
        },
        ..EmbeddedConfig::default()
    }
    .start()
    .expect("start an embedded broker")
}
