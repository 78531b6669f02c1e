//! What to inject: the flags shared by `lameduck inject` and `lameduck webhook`, and the
//! per-workload overrides a pod template carries as `lameduck.io/*` annotations.

use std::fmt;
use std::str::FromStr;

use clap::Args;
use lameduck_k8s::ObjectMeta;

/// The opt-in / opt-out annotation (`enabled` / `disabled`), and the namespace label of the
/// same name the webhook's configuration selects on.
pub const INJECT: &str = "lameduck.io/inject";
/// The port to front, as `--port` (a name or a number).
pub const PORT: &str = "lameduck.io/port";
/// The sidecar image, as `--image`.
pub const IMAGE: &str = "lameduck.io/image";
/// `"true"`: a native sidecar, as `--native`.
pub const NATIVE: &str = "lameduck.io/native";
/// `"true"`: replace an app's own preStop hook, as `--replace-prestop`.
pub const REPLACE_PRESTOP: &str = "lameduck.io/replace-prestop";

/// lameduck's own flags that a workload may set with `lameduck.io/<flag>`: the ones that depend
/// on the app or the cluster (timings, the app probe), not the ones inject owns (addresses).
pub const TUNABLE_FLAGS: &[&str] = &[
    "shutdown-delay",
    "shutdown-quiet",
    "shutdown-delay-max",
    "drain-timeout",
    "app-shutdown-budget",
    "readiness-on-shutdown",
    "app-probe",
    "app-probe-interval",
    "app-probe-timeout",
    "startup-hold",
    "idle-timeout",
    "client-read-timeout",
    "upstream-connect-timeout",
    "upstream-timeout",
    "upstream-protocol",
    "threads",
    "log-format",
];

/// The release's own image, as k8s/base tags it.
pub const DEFAULT_IMAGE: &str = concat!("lameduck:", env!("CARGO_PKG_VERSION"));

/// The flags of both front doors (`inject` and `webhook`).
#[derive(Debug, Clone, Args)]
pub struct InjectOptions {
    /// The sidecar image (per workload: annotation lameduck.io/image).
    #[arg(long, env = "LAMEDUCK_INJECT_IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,

    /// Inject a native sidecar (an init container with restartPolicy: Always; Kubernetes 1.29+)
    /// instead of a classic one (per workload: lameduck.io/native: "true").
    #[arg(long, env = "LAMEDUCK_INJECT_NATIVE")]
    pub native: bool,

    /// Replace an app container's own preStop hook with the call to lameduck's /drain (without
    /// it such a hook is kept and reported; per workload: lameduck.io/replace-prestop: "true").
    #[arg(long, env = "LAMEDUCK_INJECT_REPLACE_PRESTOP")]
    pub replace_prestop: bool,

    /// The container port lameduck fronts, by name or number. Default: the port the input's
    /// Services target, else the only HTTP-looking port (per workload: lameduck.io/port).
    #[arg(long, env = "LAMEDUCK_INJECT_PORT")]
    pub port: Option<PortRef>,

    /// lameduck's data port in the pod (the next free one if a container already has it).
    #[arg(long, env = "LAMEDUCK_INJECT_DATA_PORT", default_value_t = 15080)]
    pub data_port: u16,

    /// lameduck's admin port in the pod (/ready /live /drain /metrics; the next free one if
    /// taken).
    #[arg(long, env = "LAMEDUCK_INJECT_ADMIN_PORT", default_value_t = 15901)]
    pub admin_port: u16,
}

/// A container port, by name or by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl FromStr for PortRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.chars().all(|c| c.is_ascii_digit()) {
            s.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .map(PortRef::Number)
                .ok_or_else(|| format!("`{s}` is not a port number (1-65535)"))
        } else if super::ports::valid_port_name(s) {
            Ok(PortRef::Name(s.to_string()))
        } else {
            Err(format!("`{s}` is neither a port number nor a port name"))
        }
    }
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => write!(f, "\"{n}\""),
        }
    }
}

/// The settings for one workload: the command's flags, overridden by its annotations.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub image: String,
    pub native: bool,
    pub replace_prestop: bool,
    pub port: Option<PortRef>,
    /// `--FLAG=VALUE` for each tunable annotation, in [`TUNABLE_FLAGS`] order.
    pub flags: Vec<(String, String)>,
    /// Annotations under lameduck.io/ that mean nothing (misspelt?).
    pub unknown: Vec<String>,
}

impl Resolved {
    /// Reads the pod's annotations over `opts`; a value that does not parse is an error naming
    /// the annotation (the workload is then left alone, not injected half-right).
    pub fn new(opts: &InjectOptions, meta: &ObjectMeta) -> Result<Resolved, String> {
        let get = |key: &str| meta.annotations.get(key).map(String::as_str);
        let flag = |key: &str, default: bool| -> Result<bool, String> {
            match get(key) {
                None => Ok(default),
                Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(other) => Err(format!(
                    "annotation {key}: \"{other}\" is not \"true\" or \"false\""
                )),
            }
        };
        let port = match get(PORT) {
            Some(v) => Some(
                v.parse::<PortRef>()
                    .map_err(|e| format!("annotation {PORT}: {e}"))?,
            ),
            None => opts.port.clone(),
        };
        let flags = TUNABLE_FLAGS
            .iter()
            .filter_map(|f| {
                get(&format!("lameduck.io/{f}")).map(|v| (f.to_string(), v.to_string()))
            })
            .collect();
        let known = |k: &str| {
            [INJECT, PORT, IMAGE, NATIVE, REPLACE_PRESTOP].contains(&k)
                || k.strip_prefix("lameduck.io/")
                    .is_some_and(|f| TUNABLE_FLAGS.contains(&f))
        };
        let unknown = meta
            .annotations
            .keys()
            .filter(|k| k.starts_with("lameduck.io/") && !known(k))
            .cloned()
            .collect();
        Ok(Resolved {
            image: get(IMAGE).unwrap_or(&opts.image).to_string(),
            native: flag(NATIVE, opts.native)?,
            replace_prestop: flag(REPLACE_PRESTOP, opts.replace_prestop)?,
            port,
            flags,
            unknown,
        })
    }

    /// The value an annotation gave a tunable flag.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::config::RunCommand;

    /// Every annotation stands for a real flag of the proxy, so a flag renamed or removed there
    /// fails here instead of turning its annotation into a silent no-op.
    #[test]
    fn every_tunable_is_a_lameduck_flag() {
        let cmd = RunCommand::command();
        let longs: Vec<&str> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
        for flag in TUNABLE_FLAGS {
            assert!(longs.contains(flag), "--{flag} is not a lameduck flag");
        }
    }

    #[test]
    fn ports_are_names_or_numbers() {
        assert_eq!("8080".parse::<PortRef>(), Ok(PortRef::Number(8080)));
        assert_eq!("http".parse::<PortRef>(), Ok(PortRef::Name("http".into())));
        assert!("0".parse::<PortRef>().is_err());
        assert!("70000".parse::<PortRef>().is_err());
        assert!("Not_A_Port".parse::<PortRef>().is_err());
    }
}
