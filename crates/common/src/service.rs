//! The life cycle every service shares: connect to Redis and Kafka, bind, serve until a
//! shutdown signal, then stop the background tasks.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, Topics};
use crate::error::{Error, Result};
use crate::ledger::{AccountKind, Ledger};
use crate::protocol::{Envelope, OrderReply};
use crate::settings::Settings;

/// How long a starting service waits for its Redis and Kafka before it gives up (and the
/// watchdog or the orchestrator starts it again).
const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

/// The connections a service is built from.
#[derive(Clone)]
pub struct Deps {
    pub settings: Settings,
    pub redis: ConnectionManager,
    pub bus: Bus,
}

impl Deps {
    pub async fn connect(settings: Settings) -> Result<Self> {
        let redis = crate::db::connect(&settings.redis_url, STARTUP_PATIENCE).await?;
        let bus = Bus::connect(&settings, STARTUP_PATIENCE).await?;
        Ok(Self {
            settings,
            redis,
            bus,
        })
    }

    /// Readiness: the service can serve its own routes, i.e. its Redis answers. Kafka is not
    /// asked: stock and payment routes do not need it, and checkout answers 503 by itself
    /// while the broker is away, so a broker outage takes no pod out of service.
    pub fn readiness(
        &self,
    ) -> impl Fn() -> BoxFuture<'static, bool> + Clone + Send + Sync + 'static {
        let redis = self.redis.clone();
        move || {
            let redis = redis.clone();
            Box::pin(async move { crate::db::is_ready(&redis).await })
        }
    }
}

/// Binds `settings.http_addr` with a deep accept queue: a gateway under a burst opens
/// hundreds of connections at once, and a full queue drops SYNs (a 1 s retransmit each).
pub async fn bind(settings: &Settings) -> Result<TcpListener> {
    let addr = settings.http_addr;
    let fail = |e: std::io::Error| Error::Config(format!("cannot listen on {addr}: {e}"));
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.set_nodelay(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    socket.listen(4096).map_err(fail)
}

/// Serves `router` until `shutdown`; if the server stops on its own, cancels `shutdown` so
/// the background tasks stop too.
pub async fn run(listener: TcpListener, router: Router, shutdown: CancellationToken) -> Result<()> {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "serving");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .map_err(|e| Error::Internal(format!("http server: {e}")))?;
    shutdown.cancel();
    Ok(())
}

/// Shared state of a participant's handlers (stock, payment): connections and accounts.
#[derive(Clone)]
pub struct Participant {
    pub deps: Deps,
    pub ledger: Ledger,
}

/// What makes a participant service: its accounts, its command topic, how it answers a
/// command, and its HTTP routes. Stock and payment are each one of these.
pub struct ParticipantSpec<C> {
    pub accounts: AccountKind,
    pub topic: fn(&Topics) -> &str,
    pub handle: fn(Participant, Envelope<C>) -> BoxFuture<'static, Option<OrderReply>>,
    pub router: fn(Participant) -> Router,
}

impl<C> ParticipantSpec<C>
where
    C: Serialize + DeserializeOwned + Send + 'static,
{
    /// The whole `main` of the participant's binary: [`launch`] with [`ParticipantSpec::run`].
    pub async fn main(&'static self) -> Result<()> {
        let name = self.accounts.participant.as_str();
        launch(name, |deps, listener, shutdown| {
            self.run(deps, listener, shutdown)
        })
        .await
    }

    /// Runs the participant: its Kafka command loop (consumer group named after it, behind the
    /// topic prefix, so stacks sharing a broker never share a group) beside its
    /// HTTP API, both until `shutdown`.
    pub async fn run(
        &self,
        deps: Deps,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let retention = deps.settings.state_retention;
        let app = Participant {
            ledger: Ledger::new(deps.redis.clone(), self.accounts, retention),
            deps,
        };
        let (for_commands, handle) = (app.clone(), self.handle);
        let on_command = move |envelope| handle(for_commands.clone(), envelope);
        let group = format!(
            "{}{}",
            app.deps.settings.topic_prefix,
            self.accounts.participant.as_str()
        );
        let commands = tokio::spawn(crate::bus::commands::run(
            app.deps.bus.clone(),
            (self.topic)(&app.deps.bus.topics).to_string(),
            group,
            on_command,
            shutdown.clone(),
        ));
        run(listener, (self.router)(app), shutdown).await?;
        commands
            .await
            .map_err(|e| Error::Internal(format!("command loop: {e}")))?
    }
}

/// The whole `main` of service `name`: telemetry and metrics, settings, bind, connect, then
/// `app` until SIGTERM or Ctrl-C. Binding comes first so that a port clash fails at once.
pub async fn launch<F, Fut>(name: &'static str, app: F) -> Result<()>
where
    F: FnOnce(Deps, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    crate::telemetry::init(name);
    crate::metrics::init(name);
    let settings = Settings::from_env()?;
    let shutdown = crate::http::shutdown_on_signal();
    let listener = bind(&settings).await?;
    let deps = Deps::connect(settings).await?;
    crate::metrics::spawn_upkeep(deps.redis.clone(), shutdown.clone());
    let result = app(deps, listener, shutdown).await;
    // The command loops' consumers close on threads of their own (`bus::Closing`), committing
    // their last offsets; a stop waits for that, but never longer than CLOSE_PATIENCE (the
    // supervisor's grace before SIGKILL is 5 s).
    let closed = tokio::task::spawn_blocking(|| crate::bus::wait_for_closes(CLOSE_PATIENCE))
        .await
        .unwrap_or(false);
    if !closed {
        tracing::warn!("kafka consumers still closing after {CLOSE_PATIENCE:?}; exiting anyway");
    }
    crate::telemetry::shutdown();
    result
}

/// How long a stopping service waits for its Kafka consumers to close.
const CLOSE_PATIENCE: Duration = Duration::from_secs(3);
