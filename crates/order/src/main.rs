use common::service::{self, Deps};
use common::{Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let settings = Settings::from_env()?;
    let shutdown = common::http::shutdown_on_signal();
    let listener = service::bind(&settings).await?;
    let deps = Deps::connect(settings).await?;
    order::run(deps, listener, shutdown).await?;
    Ok(())
}
