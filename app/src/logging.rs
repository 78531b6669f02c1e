//! Log set-up (shared with lameduck, see `lameduck_common::logging`) with slowapp's defaults:
//! tracing to stderr (where the seed's Go `log` writes), as text or JSON.

use lameduck_common::logging::{self, Options};

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` refines the level (default `info`); JSON lines
/// keep the event's fields under `fields`.
pub fn init(format: LogFormat) {
    logging::init(
        format,
        Options {
            default_filter: "info",
            flatten_json: false,
        },
    );
}
