//! Log set-up (shared with slowapp, see `lameduck_common::logging`) with lameduck's defaults.

use lameduck_common::logging::{self, Options};

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default: lameduck at info, pingora
/// only when it has a real problem (lameduck logs upstream failures itself, with their kind).
/// JSON lines carry the event's fields at the top level.
pub fn init(format: LogFormat) {
    logging::init(
        format,
        Options {
            default_filter: "info,pingora_core=error,pingora_proxy=error",
            flatten_json: true,
        },
    );
}
