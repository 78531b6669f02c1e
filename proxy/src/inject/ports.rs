//! Which container port lameduck may front: never one that does not speak HTTP or gRPC.
//!
//! A port counts as not HTTP when anything says so: its protocol (UDP, SCTP), the `appProtocol`
//! of a Service port that targets it, the port-name conventions of the ecosystem (`tcp-`,
//! `redis`, `mysql`, `https`, ... as Istio and Linkerd read them), or a well-known non-HTTP
//! port number (databases, brokers, TLS). A port with no evidence either way counts as HTTP
//! (that is what most pods serve), but loses a tie to one whose name or number says `http`.

/// What a port looks like, as far as its name, number and protocol tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Looks {
    /// Its name, appProtocol or number says HTTP or gRPC.
    Http,
    /// Nothing says either way.
    Unknown,
    /// It carries something else; the reason says what gave it away.
    NotHttp(String),
}

/// `appProtocol` values that lameduck can carry (HTTP/1.1, h2c, gRPC, WebSocket).
const HTTP_APP_PROTOCOLS: &[&str] = &[
    "http",
    "http2",
    "h2c",
    "grpc",
    "grpc-web",
    "kubernetes.io/h2c",
    "kubernetes.io/ws",
    "ws",
];

/// Port-name prefixes (before the first `-`, or the whole name) that mean HTTP or gRPC.
const HTTP_NAMES: &[&str] = &["http", "http2", "h2c", "grpc", "web", "ws"];

/// Port-name prefixes that mean something lameduck must not sit in front of. TLS is here too:
/// lameduck speaks plain HTTP to clients and cannot terminate a pod's own TLS.
const NON_HTTP_NAMES: &[&str] = &[
    "tcp",
    "udp",
    "tls",
    "https",
    "mongo",
    "mongodb",
    "mysql",
    "mariadb",
    "postgres",
    "postgresql",
    "pg",
    "redis",
    "memcache",
    "memcached",
    "amqp",
    "amqps",
    "kafka",
    "zookeeper",
    "zk",
    "cassandra",
    "cql",
    "mqtt",
    "nats",
    "ldap",
    "smtp",
    "dns",
    "ssh",
    "ftp",
    "sftp",
    "thrift",
    "dubbo",
    "etcd",
    "peer",
    "cluster",
    "gossip",
    "raft",
    "jdbc",
    "sql",
];

/// Well-known port numbers of protocols other than plain HTTP.
const NON_HTTP_NUMBERS: &[(u16, &str)] = &[
    (21, "FTP"),
    (22, "SSH"),
    (25, "SMTP"),
    (53, "DNS"),
    (389, "LDAP"),
    (443, "HTTPS (TLS)"),
    (465, "SMTPS"),
    (587, "SMTP submission"),
    (636, "LDAPS"),
    (853, "DNS over TLS"),
    (1433, "SQL Server"),
    (1521, "Oracle"),
    (1883, "MQTT"),
    (2181, "ZooKeeper"),
    (2379, "etcd"),
    (2380, "etcd peer"),
    (3306, "MySQL"),
    (4222, "NATS"),
    (5432, "PostgreSQL"),
    (5671, "AMQPS"),
    (5672, "AMQP"),
    (6379, "Redis"),
    (6443, "the Kubernetes API (TLS)"),
    (8443, "HTTPS (TLS)"),
    (8883, "MQTT over TLS"),
    (9042, "Cassandra"),
    (9092, "Kafka"),
    (9093, "Kafka (TLS)"),
    (11211, "memcached"),
    (26379, "Redis Sentinel"),
    (27017, "MongoDB"),
];

/// Port numbers that conventionally serve HTTP.
const HTTP_NUMBERS: &[u16] = &[80, 8080];

/// Classifies a container port from its number, name and protocol, and the `appProtocol`s of
/// the Service ports that target it.
pub fn classify(
    number: u16,
    name: Option<&str>,
    protocol: Option<&str>,
    app_protocols: &[String],
) -> Looks {
    if let Some(p) = protocol {
        if !p.eq_ignore_ascii_case("TCP") {
            return Looks::NotHttp(format!("protocol {p}"));
        }
    }
    for ap in app_protocols {
        if !HTTP_APP_PROTOCOLS.contains(&ap.to_ascii_lowercase().as_str()) {
            return Looks::NotHttp(format!("a Service gives it appProtocol {ap}"));
        }
    }
    if let Some(name) = name {
        let lower = name.to_ascii_lowercase();
        let head = lower.split('-').next().unwrap_or(&lower);
        if NON_HTTP_NAMES.contains(&head) {
            return Looks::NotHttp(format!("its name \"{name}\" says {head}"));
        }
        if HTTP_NAMES.contains(&head) {
            return Looks::Http;
        }
    }
    if let Some((_, what)) = NON_HTTP_NUMBERS.iter().find(|(n, _)| *n == number) {
        return Looks::NotHttp(format!("{number} is the {what} port"));
    }
    if !app_protocols.is_empty() || HTTP_NUMBERS.contains(&number) {
        return Looks::Http;
    }
    Looks::Unknown
}

/// The longest a port name may be (IANA service names).
const MAX_PORT_NAME: usize = 15;

/// Whether `name` is a valid container port name: at most 15 of `a-z0-9-`, at least one
/// letter, no leading, trailing or doubled `-`.
pub fn valid_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PORT_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// A new name for the app's port once lameduck takes over its old one: `app-NAME` (cut to the
/// 15-character limit), else `app-PORT`, never one in `taken`.
pub fn renamed(old: &str, port: u16, taken: &[&str]) -> String {
    let mut candidate = format!("app-{old}");
    candidate.truncate(MAX_PORT_NAME);
    let candidate = candidate.trim_end_matches('-').to_string();
    if valid_port_name(&candidate) && !taken.contains(&candidate.as_str()) {
        return candidate;
    }
    let by_number = format!("app-{port}");
    if !taken.contains(&by_number.as_str()) {
        return by_number;
    }
    (1..)
        .map(|i| format!("app{i}-{port}"))
        .find(|n| !taken.contains(&n.as_str()) && valid_port_name(n))
        .expect("some name is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_decides() {
        assert_eq!(classify(8080, Some("http"), None, &[]), Looks::Http);
        assert_eq!(classify(9000, Some("grpc-api"), None, &[]), Looks::Http);
        assert_eq!(classify(5678, None, None, &[]), Looks::Unknown);
        assert_eq!(classify(8080, None, None, &[]), Looks::Http);
        assert!(matches!(
            classify(6379, None, None, &[]),
            Looks::NotHttp(r) if r.contains("Redis")
        ));
        assert!(matches!(
            classify(7000, Some("tcp-cluster"), None, &[]),
            Looks::NotHttp(r) if r.contains("tcp")
        ));
        assert!(matches!(
            classify(53, Some("dns"), Some("UDP"), &[]),
            Looks::NotHttp(r) if r.contains("UDP")
        ));
        assert!(matches!(
            classify(8080, Some("http"), None, &["kubernetes.io/wss".into()]),
            Looks::NotHttp(r) if r.contains("appProtocol")
        ));
        assert_eq!(
            classify(5000, None, None, &["kubernetes.io/h2c".into()]),
            Looks::Http
        );
    }

    #[test]
    fn renamed_ports_stay_valid_and_unique() {
        assert_eq!(renamed("http", 8080, &[]), "app-http");
        assert_eq!(renamed("http-metrics-x", 8080, &[]), "app-http-metric");
        assert_eq!(renamed("web", 8080, &["app-web"]), "app-8080");
        assert!(valid_port_name(&renamed("a-very-long-nam", 1, &[])));
        assert!(!valid_port_name("1234"));
        assert!(!valid_port_name("a--b"));
    }
}
