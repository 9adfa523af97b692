#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(
        common::service::launch("stock", |deps, listener, shutdown| {
            stock::SERVICE.run(deps, listener, shutdown)
        })
        .await?,
    )
}
