//! Services in the test process (the `spawn_app` pattern), so a service test needs no whole
//! stack: each app is one service on 127.0.0.1:0 with a private Redis, built from the same
//! `Deps` and `run` as its binary, beside the one Kafka broker of the test binary.
//!
//! Apps that should talk to each other share a [`Topics`] prefix; apart from that, every
//! app has topics of its own, so tests running side by side never see each other's messages.

use std::collections::HashMap;
use std::time::Duration;

use common::Settings;
use common::service::Deps;
use redis::aio::ConnectionManager;
use stack::{Protocol, Stack, StackConfig};
use testkit::TestRedis;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Api;

/// How long a stopping app may take to end its server and background loops.
const STOP_PATIENCE: Duration = Duration::from_secs(15);

/// A service to spawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Order,
    Stock,
    Payment,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Stock => "stock",
            Service::Payment => "payment",
        }
    }
}

/// The `bootstrap.servers` of this test binary's Kafka broker: a stack without services
/// (Redis servers, Kafka and the gateway), started on first use and stopped when the test
/// process exits.
pub async fn kafka_brokers() -> String {
    static STACK: OnceCell<Stack> = OnceCell::const_new();
    let stack = STACK
        .get_or_init(|| crate::start(StackConfig::for_tests("spawn").without_services()))
        .await;
    format!("127.0.0.1:{}", stack.ports().kafka)
}

/// A topic prefix of its own: the apps spawned on it form one shop.
#[derive(Clone, Debug)]
pub struct Topics {
    prefix: String,
    protocol: Protocol,
}

impl Topics {
    /// Fresh topics, checked out with `protocol`.
    pub fn new(protocol: Protocol) -> Self {
        Topics {
            prefix: format!("app-{}.", uuid::Uuid::new_v4().simple()),
            protocol,
        }
    }

    /// The names of these topics, as the services spell them.
    pub fn names(&self) -> common::bus::Topics {
        common::bus::Topics::new(&self.prefix)
    }

    /// The prefix of these topics (the default `REPLICA_ID`s start with it).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Spawns a whole shop on these topics: the order service with `order_env`, stock and
    /// payment with `env` (see [`Topics::spawn`]).
    pub async fn spawn_shop(&self, order_env: &[(&str, &str)], env: &[(&str, &str)]) -> Shop {
        let (order, stock, payment) = tokio::join!(
            self.spawn(Service::Order, order_env),
            self.spawn(Service::Stock, env),
            self.spawn(Service::Payment, env),
        );
        Shop {
            order,
            stock,
            payment,
        }
    }

    /// Spawns `service` on these topics; `env` sets further settings by their variable names
    /// (`ADMIN_TOKEN`, `CHECKOUT_TIMEOUT_MS`, ...).
    pub async fn spawn(&self, service: Service, env: &[(&str, &str)]) -> App {
        let db = TestRedis::start(&[]);
        let mut vars: HashMap<&str, String> = HashMap::from([
            ("HTTP_ADDR", "127.0.0.1:0".to_string()),
            ("REDIS_URL", db.url()),
            ("KAFKA_BROKERS", kafka_brokers().await),
            ("TOPIC_PREFIX", self.prefix.clone()),
            // Unique on the broker: the replica id names a static group member. The trailing
            // number picks the order replica's reply partition.
            (
                "REPLICA_ID",
                format!("{}{}-1", self.prefix, service.as_str()),
            ),
            ("CHECKOUT_PROTOCOL", self.protocol.as_str().to_string()),
            ("KAFKA_PARTITIONS", "2".to_string()),
        ]);
        vars.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
        let settings = Settings::from_lookup(|k| vars.get(k).cloned()).expect("test settings");
        let listener = common::service::bind(&settings).await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("bound address"));
        let deps = Deps::connect(settings).await.expect("redis and kafka");
        let redis = deps.redis.clone();
        let token = CancellationToken::new();
        let stop = token.clone();
        let task = tokio::spawn(async move {
            match service {
                Service::Order => order::run(deps, listener, stop).await,
                Service::Stock => stock::SERVICE.run(deps, listener, stop).await,
                Service::Payment => payment::SERVICE.run(deps, listener, stop).await,
            }
        });
        App {
            url,
            redis,
            token,
            task: Some(task),
            _db: db,
        }
    }
}

/// `service` alone, on topics of its own, with the saga protocol.
pub async fn spawn_app(service: Service) -> App {
    Topics::new(Protocol::Saga).spawn(service, &[]).await
}

/// A whole shop in the test process: order, stock and payment on shared topics.
pub struct Shop {
    pub order: App,
    pub stock: App,
    pub payment: App,
}

/// Spawns the three services of a shop that checks out with `protocol`.
pub async fn spawn_shop(protocol: Protocol) -> Shop {
    Topics::new(protocol).spawn_shop(&[], &[]).await
}

impl Shop {
    /// Stops the three services and waits for each (see [`App::shutdown`]).
    pub async fn shutdown(self) {
        for app in [self.order, self.stock, self.payment] {
            app.shutdown().await.expect("a clean stop");
        }
    }
}

/// A service running in this process. Dropping it stops it without waiting;
/// [`App::shutdown`] waits for it to end.
pub struct App {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The app's own Redis, to look at what it stored.
    pub redis: ConnectionManager,
    token: CancellationToken,
    task: Option<JoinHandle<common::Result<()>>>,
    /// Killed when the app is dropped.
    _db: TestRedis,
}

impl App {
    /// A client of the app's HTTP API.
    pub fn api(&self) -> Api {
        Api::at(self.url.clone())
    }

    /// Cancels the app's shutdown token and waits for its server and background loops to
    /// end; returns what the service's `run` returned.
    pub async fn shutdown(mut self) -> common::Result<()> {
        self.token.cancel();
        let task = self.task.take().expect("stopped once");
        match tokio::time::timeout(STOP_PATIENCE, task).await {
            Ok(ended) => ended.expect("the app panicked"),
            Err(_) => panic!("the app did not stop within {STOP_PATIENCE:?}"),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
