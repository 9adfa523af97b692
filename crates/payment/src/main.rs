#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(
        common::service::launch("payment", |deps, listener, shutdown| {
            payment::SERVICE.run(deps, listener, shutdown)
        })
        .await?,
    )
}
