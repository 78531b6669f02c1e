//! What every run of the matrix shares, derived once from the command line.

use std::path::PathBuf;
use std::time::Duration;

use crate::measure::load::LoadConfig;
use crate::measure::ProtocolLoad;
use crate::scale::Scale;

/// Settings shared by every run of the matrix.
#[derive(Debug, Clone)]
pub struct Settings {
    pub scale: Scale,
    /// Propagation lag range, in model time.
    pub lag: (Duration, Duration),
    pub restarts: u32,
    pub load: LoadConfig,
    /// What the load sends (`--load`) and its long-lived connections.
    pub protocol: ProtocolLoad,
    pub out_dir: PathBuf,
    pub seed: u64,
}
