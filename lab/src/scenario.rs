//! The scenarios the lab knows by name, and the ones given as files.
//!
//! The built-in manifests are compiled into the binary so `lab` runs from any directory; they
//! are also plain files under `lab/manifests/`, to read and to copy.

use std::path::Path;

use anyhow::{bail, Result};

use crate::manifest::{self, Deployment};

/// `(name, manifest)` of every built-in scenario, in the order the demo runs them.
pub const BUILTIN: &[(&str, &str)] = &[
    ("bare", include_str!("../manifests/bare.yaml")),
    (
        "prestop-sleep",
        include_str!("../manifests/prestop-sleep.yaml"),
    ),
    ("lameduck", include_str!("../manifests/lameduck.yaml")),
    (
        "lameduck-native",
        include_str!("../manifests/lameduck-native.yaml"),
    ),
];

/// One scenario: a name for the table and the Deployment it replays.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub deployment: Deployment,
}

impl Scenario {
    /// A scenario "protects" its pods when they run lameduck: such a scenario must lose nothing,
    /// and the lab exits non-zero when it does.
    pub fn runs_lameduck(&self) -> bool {
        let pod = &self.deployment.pod;
        pod.containers
            .iter()
            .chain(&pod.sidecars)
            .any(|c| crate::cluster::pod::binary_for_image(&c.image) == Some("lameduck"))
    }
}

pub fn builtin(name: &str, target_port: Option<u16>) -> Result<Scenario> {
    match BUILTIN.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => Ok(Scenario {
            name: (*n).to_string(),
            deployment: manifest::parse(text, target_port)?,
        }),
        None => bail!(
            "unknown scenario `{name}`; known: {}",
            BUILTIN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub fn from_file(path: &Path, target_port: Option<u16>) -> Result<Scenario> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "manifest".into());
    Ok(Scenario {
        name,
        deployment: manifest::load_file(path, target_port)?,
    })
}
