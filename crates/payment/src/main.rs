#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(common::service::launch(payment::run).await?)
}
