#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(common::service::launch(stock::run).await?)
}
