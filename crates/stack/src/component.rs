//! The components of a stack, in start order, and how each one is probed.
//!
//! Names are fixed by the contract (DESIGN.md section 3): `order-db`, `stock-db`, `payment-db`,
//! `kafka`, `order-1`.., `stock-1`.., `payment-1`.., `gateway`.

use std::time::Duration;

use crate::config::{PortLayout, StackConfig};
use crate::health::{self, Probe};

/// The three services; each has its own Redis (`NAME-db`) and replicas (`NAME-i`).
pub const SERVICES: [&str; 3] = ["order", "stock", "payment"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Kafka,
    Service,
    Gateway,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub kind: Kind,
    /// The port it serves (for Kafka: the broker port).
    pub port: u16,
    /// For Redis and service replicas: which service (`order`, `stock`, `payment`).
    pub service: Option<&'static str>,
}

impl Component {
    /// Ready to serve: Redis answers PING, Kafka lists a broker, a service answers
    /// `/health/ready` (its Redis and Kafka usable), the gateway answers `/health`.
    pub async fn probe(&self) -> Probe {
        match self.kind {
            Kind::Redis => health::redis(self.port).await,
            Kind::Kafka => health::kafka(self.port).await,
            Kind::Service => health::http_ok(self.port, "/health/ready").await,
            Kind::Gateway => health::http_ok(self.port, "/health").await,
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
            Kind::Kafka | Kind::Service => Duration::from_secs(120),
            Kind::Redis | Kind::Gateway => Duration::from_secs(30),
        }
    }
}

/// Start stages: every component of a stage depends only on earlier stages, so the supervisor
/// starts a stage, waits until it is healthy, then starts the next; it stops them in reverse.
pub fn stages(cfg: &StackConfig, ports: &PortLayout) -> Vec<Vec<Component>> {
    let db_port = |s: &str| match s {
        "order" => ports.order_db,
        "stock" => ports.stock_db,
        _ => ports.payment_db,
    };
    let base = |s: &str| match s {
        "order" => ports.order_base,
        "stock" => ports.stock_base,
        _ => ports.payment_base,
    };
    let redis = SERVICES
        .iter()
        .map(|&s| Component {
            name: format!("{s}-db"),
            kind: Kind::Redis,
            port: db_port(s),
            service: Some(s),
        })
        .collect();
    let kafka = vec![Component {
        name: "kafka".into(),
        kind: Kind::Kafka,
        port: ports.kafka,
        service: None,
    }];
    let services: Vec<_> = if cfg.services {
        SERVICES
            .iter()
            .flat_map(|&s| {
                (1..=cfg.replicas).map(move |i| Component {
                    name: format!("{s}-{i}"),
                    kind: Kind::Service,
                    port: (base(s) as u32 + i) as u16,
                    service: Some(s),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let gateway = vec![Component {
        name: "gateway".into(),
        kind: Kind::Gateway,
        port: ports.gateway,
        service: None,
    }];
    [redis, kafka, services, gateway]
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
    fn without_services_has_three_stages() {
        let cfg = StackConfig::for_tests("c").without_services();
        assert_eq!(stages(&cfg, &PortLayout::default()).len(), 3);
    }
}
