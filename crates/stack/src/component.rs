//! The components of a stack, in start order, and how each one is probed.
//!
//! Names are fixed by the contract (DESIGN.md section 3): `order-db`, `stock-db`, `payment-db`,
//! `kafka`, `order-1`.., `stock-1`.., `payment-1`.., `gateway`, and with `MONITORING=1`
//! `prometheus`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{PortLayout, StackConfig};
use crate::health::{self, Probe};
use crate::{Error, Result};

/// The three services; each has its own Redis (`NAME-db`) and replicas (`NAME-i`). Names are
/// parsed here only, and an unknown one is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Order,
    Stock,
    Payment,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Order, Service::Stock, Service::Payment];

    /// The name of the service, its binary and its component prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Stock => "stock",
            Service::Payment => "payment",
        }
    }

    /// The port of its Redis.
    pub fn db_port(self, ports: &PortLayout) -> u16 {
        match self {
            Service::Order => ports.order_db,
            Service::Stock => ports.stock_db,
            Service::Payment => ports.payment_db,
        }
    }

    /// Replica `i` (1-based) listens on `base_port + i`.
    pub fn base_port(self, ports: &PortLayout) -> u16 {
        match self {
            Service::Order => ports.order_base,
            Service::Stock => ports.stock_base,
            Service::Payment => ports.payment_base,
        }
    }

    /// Its replicas' components: `NAME-1`..`NAME-replicas`.
    pub fn replicas(self, ports: &PortLayout, replicas: u32) -> impl Iterator<Item = Component> {
        let base = self.base_port(ports) as u32;
        (1..=replicas).map(move |i| Component {
            name: format!("{self}-{i}"),
            kind: Kind::Service(self),
            port: (base + i) as u16,
        })
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Service {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Service::ALL
            .into_iter()
            .find(|service| service.as_str() == s)
            .ok_or_else(|| Error::Config(format!("unknown service {s:?}")))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The Redis of one service.
    Redis(Service),
    Kafka,
    /// A replica of one service.
    Service(Service),
    Gateway,
    /// The local Prometheus (`MONITORING=1`).
    Prometheus,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub kind: Kind,
    /// The port it serves (for Kafka: the broker port).
    pub port: u16,
}

impl Component {
    /// Ready to serve: Redis answers PING, Kafka lists a broker, a service answers
    /// `/health/ready` (it can serve its own routes), the gateway answers `/health`.
    pub async fn probe(&self) -> Probe {
        match self.kind {
            Kind::Redis(_) => health::redis(self.port).await,
            Kind::Kafka => health::kafka(self.port).await,
            Kind::Service(_) => health::http_ok(self.port, "/health/ready").await,
            Kind::Gateway => health::http_ok(self.port, "/health").await,
            Kind::Prometheus => health::http_ok(self.port, "/-/ready").await,
        }
    }

    /// How long a SIGTERM may take before SIGKILL: Kafka's controlled shutdown needs a while.
    pub fn stop_grace(&self) -> Duration {
        match self.kind {
            Kind::Kafka => Duration::from_secs(20),
            _ => Duration::from_secs(5),
        }
    }

    /// How long a start may take before the supervisor goes on with the next stage anyway.
    pub fn start_timeout(&self) -> Duration {
        match self.kind {
            Kind::Kafka | Kind::Service(_) => Duration::from_secs(120),
            Kind::Redis(_) | Kind::Gateway | Kind::Prometheus => Duration::from_secs(30),
        }
    }
}

/// Start stages: every component of a stage depends only on earlier stages, so the supervisor
/// starts a stage, waits until it is healthy, then starts the next; it stops them in reverse.
pub fn stages(cfg: &StackConfig, ports: &PortLayout) -> Vec<Vec<Component>> {
    let redis = Service::ALL
        .map(|s| Component {
            name: format!("{s}-db"),
            kind: Kind::Redis(s),
            port: s.db_port(ports),
        })
        .to_vec();
    let kafka = vec![Component {
        name: "kafka".into(),
        kind: Kind::Kafka,
        port: ports.kafka,
    }];
    let services: Vec<_> = if cfg.services {
        Service::ALL
            .into_iter()
            .flat_map(|s| s.replicas(ports, cfg.replicas))
            .collect()
    } else {
        Vec::new()
    };
    let gateway = vec![Component {
        name: "gateway".into(),
        kind: Kind::Gateway,
        port: ports.gateway,
    }];
    let prometheus = Component {
        name: "prometheus".into(),
        kind: Kind::Prometheus,
        port: ports.prometheus,
    };
    let monitoring: Vec<_> = cfg.monitoring.then_some(prometheus).into_iter().collect();
    [redis, kafka, services, gateway, monitoring]
        .into_iter()
        .filter(|stage: &Vec<Component>| !stage.is_empty())
        .collect()
}

/// All components in start order.
pub fn all(cfg: &StackConfig, ports: &PortLayout) -> Vec<Component> {
    stages(cfg, ports).into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports_follow_the_contract() {
        let cfg = StackConfig::for_tests("c").with_replicas(2);
        let names: Vec<_> = all(&cfg, &PortLayout::default())
            .into_iter()
            .map(|c| (c.name, c.port))
            .collect();
        let expected = [
            ("order-db", 6380),
            ("stock-db", 6381),
            ("payment-db", 6382),
            ("kafka", 9092),
            ("order-1", 8101),
            ("order-2", 8102),
            ("stock-1", 8201),
            ("stock-2", 8202),
            ("payment-1", 8301),
            ("payment-2", 8302),
            ("gateway", 8000),
        ];
        let expected: Vec<_> = expected.iter().map(|(n, p)| (n.to_string(), *p)).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn service_names_parse_in_one_place() {
        for s in Service::ALL {
            assert_eq!(s.as_str().parse::<Service>().unwrap(), s);
        }
        assert!("Order".parse::<Service>().is_err());
        assert!("gateway".parse::<Service>().is_err());
    }

    #[test]
    fn monitoring_adds_prometheus_last() {
        let cfg = StackConfig::for_tests("c").with_monitoring();
        let last = all(&cfg, &PortLayout::default()).pop().unwrap();
        assert_eq!((last.name.as_str(), last.port), ("prometheus", 9090));
    }

    #[test]
    fn without_services_has_three_stages() {
        let cfg = StackConfig::for_tests("c").without_services();
        assert_eq!(stages(&cfg, &PortLayout::default()).len(), 3);
    }
}
