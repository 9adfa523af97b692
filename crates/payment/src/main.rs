#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Ok(payment::SERVICE.main().await?)
}
