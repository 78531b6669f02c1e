//! `lameduck webhook`: a mutating admission webhook that applies `inject`'s injection to Pods at
//! creation (admission.k8s.io/v1 AdmissionReview over HTTPS, answered with a JSONPatch), for
//! teams that opt a namespace in with a label instead of piping manifests through a CLI.
//!
//! - `POST /mutate`          pods of namespaces labelled `lameduck.io/inject=enabled` (the
//!   MutatingWebhookConfiguration's namespaceSelector decides who calls it): injected unless
//!   the pod is annotated `lameduck.io/inject: "disabled"`;
//! - `POST /mutate/opt-in`   pods of every other namespace: injected only when annotated
//!   `lameduck.io/inject: "enabled"`.
//!
//! The admin port (plain HTTP) serves `/ready` (503 from SIGTERM on), `/live` and `/metrics`.
//! On SIGTERM it fails `/ready`, keeps serving for `--shutdown-delay` while its endpoints are
//! removed, then stops accepting and drains open connections for up to `--drain-timeout`. k8s/webhook/
//! has the manifests; docs/injection.md the rules.
//!
//! `lameduck webhook cert` makes a self-signed CA and serving certificate for clusters without
//! cert-manager.

mod admission;
mod cert;
mod server;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::config::{parse_duration, LogFormat};
use crate::inject::settings::InjectOptions;

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WebhookCommand {
    #[command(subcommand)]
    pub command: Option<WebhookSubcommand>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhookSubcommand {
    /// Write a self-signed CA and a serving certificate for the webhook's Service (ca.crt,
    /// tls.crt, tls.key) and the caBundle patch for its MutatingWebhookConfiguration.
    Cert(cert::CertArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTPS address the API server calls.
    #[arg(long, env = "LAMEDUCK_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Plain-HTTP admin address: /ready /live /metrics.
    #[arg(
        long,
        env = "LAMEDUCK_WEBHOOK_ADMIN_LISTEN",
        default_value = "0.0.0.0:9901"
    )]
    pub admin_listen: SocketAddr,

    /// The serving certificate (PEM, chain allowed). Re-read when it changes.
    #[arg(long, env = "LAMEDUCK_WEBHOOK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM). Re-read when it changes.
    #[arg(long, env = "LAMEDUCK_WEBHOOK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// How often the certificate files are checked for a change.
    #[arg(long, env = "LAMEDUCK_WEBHOOK_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,

    /// After SIGTERM, how long to keep serving (with /ready failing) while the webhook's
    /// endpoints are removed from the API server's view.
    #[arg(long, env = "LAMEDUCK_WEBHOOK_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Then, how long open connections may take to finish their requests.
    #[arg(long, env = "LAMEDUCK_WEBHOOK_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "LAMEDUCK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub inject: InjectOptions,
}

pub fn run(cmd: &WebhookCommand) -> ExitCode {
    if let Some(WebhookSubcommand::Cert(args)) = &cmd.command {
        return cert::run(args);
    }
    let args = &cmd.serve;
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        eprintln!("lameduck webhook: --tls-cert and --tls-key are required (the API server calls webhooks over HTTPS only)");
        return ExitCode::from(2);
    };
    if args.tls_reload_interval.is_zero() {
        eprintln!("lameduck webhook: --tls-reload-interval must be above 0");
        return ExitCode::from(2);
    }
    crate::logging::init(args.log_format);
    match server::run(args, cert, key) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lameduck webhook: {e:#}");
            ExitCode::from(1)
        }
    }
}
