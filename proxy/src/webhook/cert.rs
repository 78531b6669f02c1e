//! `lameduck webhook cert`: a self-signed CA and a serving certificate signed by it, for
//! clusters without cert-manager. The API server trusts the CA through the
//! MutatingWebhookConfiguration's `caBundle`, so the command also writes that patch.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use base64::Engine;
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, Clone, Args)]
pub struct CertArgs {
    /// The webhook's Service name (the certificate's DNS names are derived from it).
    #[arg(long, default_value = "lameduck-webhook")]
    pub service: String,

    /// The webhook's namespace.
    #[arg(long, default_value = "lameduck-webhook")]
    pub namespace: String,

    /// Extra IP addresses the certificate is valid for (a webhook reached by URL, as in tests).
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,

    /// How long the certificates are valid, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,

    /// Where to write ca.crt, tls.crt, tls.key and ca-bundle-patch.yaml.
    #[arg(long)]
    pub out_dir: PathBuf,
}

pub fn run(args: &CertArgs) -> ExitCode {
    match write(args) {
        Ok(()) => {
            println!(
                "lameduck webhook cert: wrote ca.crt, tls.crt, tls.key and ca-bundle-patch.yaml to {}",
                args.out_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lameduck webhook cert: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn write(args: &CertArgs) -> Result<()> {
    let (svc, ns) = (&args.service, &args.namespace);
    let now = time::OffsetDateTime::now_utc();
    let until = now + time::Duration::days(i64::from(args.days));

    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("{svc}.{ns} webhook CA (lameduck)"),
    );
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::minutes(5);
    ca.not_after = until;
    let ca_key = KeyPair::generate().context("CA key")?;
    let ca_cert = ca.self_signed(&ca_key).context("CA certificate")?;

    let names = vec![
        svc.clone(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ];
    let mut leaf = CertificateParams::new(names.clone()).context("certificate parameters")?;
    leaf.subject_alt_names
        .extend(args.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{svc}.{ns}.svc"));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.not_before = now - time::Duration::minutes(5);
    leaf.not_after = until;
    let key = KeyPair::generate().context("key")?;
    let cert = leaf
        .signed_by(&key, &ca_cert, &ca_key)
        .context("certificate")?;

    let dir = &args.out_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    put(dir, "ca.crt", &ca_cert.pem())?;
    put(dir, "tls.crt", &cert.pem())?;
    put(dir, "tls.key", &key.serialize_pem())?;
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_cert.pem());
    put(dir, "ca-bundle-patch.yaml", &ca_bundle_patch(&bundle))?;
    Ok(())
}

/// A patch for both webhooks of k8s/webhook's MutatingWebhookConfiguration.
fn ca_bundle_patch(bundle: &str) -> String {
    let mut s = String::from(
        "# Written by `lameduck webhook cert`: the CA the API server trusts for the webhook.\n\
         apiVersion: admissionregistration.k8s.io/v1\n\
         kind: MutatingWebhookConfiguration\n\
         metadata:\n  name: lameduck-webhook\n\
         webhooks:\n",
    );
    for name in ["namespace.inject.lameduck.io", "pod.inject.lameduck.io"] {
        s.push_str(&format!(
            "- name: {name}\n  clientConfig:\n    caBundle: {bundle}\n"
        ));
    }
    s
}

/// Writes one file; the key readable by its owner only.
fn put(dir: &Path, name: &str, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}
