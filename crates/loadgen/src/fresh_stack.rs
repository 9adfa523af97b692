//! A fresh local stack for one measurement, via the `stack` binary (`clean`, then `up` with
//! `CHECKOUT_PROTOCOL` set; `down` at the end).

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, Result, bail};

pub struct FreshStack {
    bin: PathBuf,
    gateway: String,
}

fn workspace() -> PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).unwrap_or(here).to_path_buf()
}

async fn stack_cmd(bin: &PathBuf, args: &[&str], protocol: &str) -> Result<()> {
    let status = tokio::process::Command::new(bin)
        .args(args)
        .env("CHECKOUT_PROTOCOL", protocol)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .status()
        .await
        .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))?;
    if !status.success() {
        bail!("{} {} failed: {status}", bin.display(), args.join(" "));
    }
    Ok(())
}

impl FreshStack {
    pub async fn start(protocol: &str) -> Result<Self> {
        let bin = workspace().join("target/release/stack");
        stack_cmd(&bin, &["clean"], protocol).await?;
        stack_cmd(&bin, &["up"], protocol).await?;
        let port = std::env::var("GATEWAY_PORT").unwrap_or_else(|_| "8000".into());
        Ok(Self {
            bin,
            gateway: format!("http://127.0.0.1:{port}"),
        })
    }

    pub fn gateway_url(&self) -> &str {
        &self.gateway
    }

    pub async fn stop(self) -> Result<()> {
        stack_cmd(&self.bin, &["down"], "saga").await
    }
}
