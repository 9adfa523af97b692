//! The life cycle every service shares: connect to Redis and Kafka, bind, serve until a
//! shutdown signal, then stop the background tasks.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use redis::aio::ConnectionManager;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::error::{Error, Result};
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

    /// Readiness: Redis answers and Kafka answers.
    pub fn readiness(
        &self,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Clone + Send + Sync + 'static
    {
        let (redis, bus) = (self.redis.clone(), self.bus.clone());
        move || {
            let (redis, bus) = (redis.clone(), bus.clone());
            Box::pin(async move { crate::db::is_ready(&redis).await && bus.is_ready().await })
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
    pub ledger: crate::ledger::Ledger,
}

/// Runs a participant service: its Kafka command loop on `topic` (consumer group `group`)
/// beside its HTTP API (`router`), both until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn run_participant<C, F>(
    deps: Deps,
    accounts: crate::ledger::AccountKind,
    topic: String,
    group: &'static str,
    handle: fn(Participant, crate::protocol::Envelope<C>) -> F,
    router: fn(Participant) -> Router,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<()>
where
    C: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    F: Future<Output = crate::protocol::OrderReply> + Send + 'static,
{
    let app = Participant {
        ledger: crate::ledger::Ledger::new(deps.redis.clone(), accounts),
        deps,
    };
    let for_commands = app.clone();
    let on_command = move |envelope| handle(for_commands.clone(), envelope);
    let commands = tokio::spawn(crate::bus::commands::run(
        app.deps.bus.clone(),
        topic,
        group,
        on_command,
        shutdown.clone(),
    ));
    run(listener, router(app), shutdown).await?;
    commands
        .await
        .map_err(|e| Error::Internal(format!("command loop: {e}")))?
}

/// The whole `main` of a service: telemetry, settings, bind, connect, then `app` until
/// SIGTERM or Ctrl-C. Binding comes first so that a port clash fails at once.
pub async fn launch<F, Fut>(app: F) -> Result<()>
where
    F: FnOnce(Deps, TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    crate::telemetry::init();
    let settings = Settings::from_env()?;
    let shutdown = crate::http::shutdown_on_signal();
    let listener = bind(&settings).await?;
    let deps = Deps::connect(settings).await?;
    app(deps, listener, shutdown).await
}
