//! The binary's command line: the proxy's flags ([`RunArgs`]) or one of the subcommands. Its
//! own module, above `config`, `check`, `inject` and `webhook`, so none of them depends on
//! another through it.

use clap::{Parser, Subcommand};

use crate::config::RunArgs;

#[derive(Debug, Parser)]
#[command(
    name = "lameduck",
    version,
    about = "Sidecar reverse proxy that keeps Kubernetes rollouts from dropping requests",
    args_conflicts_with_subcommands = true,
    // A flag given twice takes its last value: kustomize patches and Helm values that append
    // `args` can override a base's without first deleting it.
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a rendered Deployment or Pod manifest for wiring that would break a zero-downtime
    /// rollout (probes, preStop, grace-period budget, rollout strategy). FILE or - for stdin.
    Check {
        /// Path of the manifest (YAML or JSON, multi-document allowed), or - for stdin.
        file: String,
        /// The Kubernetes version of the server the manifest is for (1.31, v1.31.2): some
        /// wiring works on newer servers only. The default is the oldest supported one.
        #[arg(long, default_value_t = crate::check::KubeVersion::OLDEST_SUPPORTED)]
        kube_version: crate::check::KubeVersion,
    },
    /// Wire lameduck into manifests: every Deployment, StatefulSet, DaemonSet, ReplicaSet and
    /// Pod gets the sidecar, its probes, preStop and grace period; the input's Services target
    /// it. Manifests on stdout, one line per workload on stderr (docs/injection.md).
    Inject(crate::inject::InjectArgs),
    /// Serve a mutating admission webhook that injects lameduck into Pods at creation, in
    /// namespaces labelled lameduck.io/inject=enabled or pods annotated so (docs/injection.md).
    /// `lameduck webhook cert` makes a self-signed certificate for it.
    Webhook(Box<crate::webhook::WebhookCommand>),
}
