//! `stack`: the command line of the local stack runner (`make up`, `make down`, ...).
//! Knobs come from the environment: REPLICAS, CHECKOUT_PROTOCOL, GATEWAY_PORT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use stack::{ComponentStatus, Stack, StackConfig};

#[derive(Parser)]
#[command(about = "Runs the webshop locally: Redis x3, Kafka, the services and the nginx gateway")]
struct Cli {
    /// State dir of the stack (default: .stack in the workspace); e.g. a test stack's
    /// target/stack-tests/NAME-PID, to inspect it with `status`.
    #[arg(long, global = true, env = "STACK_ROOT")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing, start the stack in the background, wait until it is healthy.
    Up,
    /// Stop everything (SIGTERM, then SIGKILL after a timeout); data is kept.
    Down,
    /// Stop everything and delete the stack's data and logs.
    Clean,
    /// One line per component: name, pid, port, health. Exit code 3 if any is unhealthy.
    Status,
    /// Install the Debian packages (redis-server, nginx-light, ...) and Kafka jars if missing.
    Install,
    /// Run the supervisor in the foreground (what `up` and the tests start in the background).
    Supervise {
        /// A JSON StackConfig; default: the `make up` stack configured from the environment.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Stop the stack when stdin closes (the launching process exited).
        #[arg(long)]
        watch_stdin: bool,
        /// Start a new session, detached from the caller's terminal.
        #[arg(long)]
        detach: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stack: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `make up` config, or the one the supervisor running in `--root` published.
fn load_config(root: &Option<PathBuf>) -> Result<StackConfig> {
    let mut cfg = StackConfig::from_env()?;
    if let Some(root) = root {
        match stack::handle::read_state(root) {
            Some(state) => cfg = state.config,
            None => cfg.root = root.clone(),
        }
    }
    Ok(cfg)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    let root = cli.root;
    match cli.command {
        Cmd::Supervise {
            config: config_file,
            watch_stdin,
            detach,
        } => {
            if detach {
                nix::unistd::setsid().context("setsid")?;
            }
            init_tracing();
            let cfg = match config_file {
                Some(path) => {
                    let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
                    serde_json::from_slice(&bytes).context("parsing the stack config")?
                }
                None => load_config(&root)?,
            };
            rt.block_on(stack::supervisor::run(cfg, watch_stdin))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Up => rt.block_on(up(load_config(&root)?)),
        Cmd::Down => {
            let cfg = load_config(&root)?;
            let was_up = rt.block_on(stack::down(&cfg))?;
            println!(
                "{}",
                if was_up {
                    "stack stopped"
                } else {
                    "stack was not running"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Clean => {
            let cfg = load_config(&root)?;
            rt.block_on(stack::down(&cfg))?;
            if cfg.root.exists() {
                std::fs::remove_dir_all(&cfg.root)
                    .with_context(|| cfg.root.display().to_string())?;
            }
            println!("stack stopped, {} deleted", cfg.root.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status => rt.block_on(status(load_config(&root)?)),
        Cmd::Install => {
            let cfg = load_config(&root)?;
            for line in stack::install::ensure(&cfg)? {
                println!("{line}");
            }
            println!("prerequisites present");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn up(mut cfg: StackConfig) -> Result<ExitCode> {
    let started = Instant::now();
    if stack::running_supervisor(&cfg.root).is_some() {
        let stack = Stack::attach(&cfg.root)?;
        println!(
            "stack already up (supervisor pid {})",
            stack.supervisor_pid()
        );
        return print_status(&stack.status().await);
    }
    for line in stack::install::ensure(&cfg)? {
        println!("{line}");
    }
    cfg.stack_bin = Some(std::env::current_exe()?);
    if cfg.kafka_warmup_s > 0 {
        println!(
            "the broker warms up for up to {} s before the services start (KAFKA_WARMUP_S=0 skips it)",
            cfg.kafka_warmup_s
        );
    }
    let stack = Stack::start_detached(cfg.clone()).await.with_context(|| {
        format!(
            "the stack did not come up; see {}",
            cfg.logs_dir().display()
        )
    })?;
    print_status(&stack.status().await)?;
    println!(
        "stack up in {:.1?}: gateway {} (supervisor pid {}, state in {})",
        started.elapsed(),
        stack.gateway_url(),
        stack.supervisor_pid(),
        cfg.root.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn status(cfg: StackConfig) -> Result<ExitCode> {
    // The published state names the running layout even if its supervisor died (the
    // components may still run, unwatched); without one, show the configured layout.
    let cfg = match stack::handle::read_state(&cfg.root) {
        Some(state) => {
            if stack::running_supervisor(&cfg.root).is_none() {
                eprintln!(
                    "warning: supervisor {} is gone: nothing restarts components; `make down`, then `make up`",
                    state.supervisor_pid
                );
            }
            state.config
        }
        None => cfg,
    };
    let stack::Ports::Fixed(ports) = cfg.ports else {
        anyhow::bail!("no stack runs in {}", cfg.root.display());
    };
    let components = stack::component::all(&cfg, &ports);
    print_status(&stack::handle::status_of(&cfg, &components).await)
}

fn print_status(status: &[ComponentStatus]) -> Result<ExitCode> {
    for s in status {
        let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let health = match (&s.health, s.pid) {
            (Ok(()), _) => "healthy".to_string(),
            (Err(_), None) => "down".to_string(),
            (Err(why), Some(_)) => format!("unhealthy ({why})"),
        };
        println!("{:<11} pid {pid:<8} port {:<6} {health}", s.name, s.port);
    }
    let all_healthy = status.iter().all(|s| s.health.is_ok());
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("STACK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
}
