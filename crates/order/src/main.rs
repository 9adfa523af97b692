#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(common::service::launch("order", order::run).await?)
}
