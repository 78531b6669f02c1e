//! Where `lameduck check` and `lameduck inject` read their manifests from: a file, or `-` for
//! stdin (so both sit in a `kubectl kustomize | ...` pipe), with errors that name the source.

use std::io::Read;

/// The whole text of `file`, or of stdin for `-`.
pub fn read(file: &str) -> Result<String, String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))
    }
}

/// How the source is named in messages.
pub fn display_name(file: &str) -> &str {
    if file == "-" {
        "stdin"
    } else {
        file
    }
}
