#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(stock::SERVICE.main().await?)
}
