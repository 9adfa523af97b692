//! The runner against real processes: a stack of Redis x3, Kafka and nginx without services,
//! shared by most tests of this binary; a second such stack beside it; full stacks with the
//! services (built by `Stack::start`), one of them monitored; and the gateway configs
//! ([`gateways`]), read without running anything.

mod client;
mod gateways;
mod monitoring;

use std::time::{Duration, Instant};

use stack::{Stack, StackConfig};
use tokio::sync::OnceCell;

/// The contract: a dead component runs again (new pid) within 2 s.
const RESTART_BOUND: Duration = Duration::from_secs(2);
const HEALTHY_AGAIN: Duration = Duration::from_secs(60);

fn config(name: &str) -> StackConfig {
    let mut cfg = StackConfig::for_tests(name).without_services();
    cfg.stack_bin = Some(env!("CARGO_BIN_EXE_stack").into());
    cfg
}

/// One stack for the whole binary: every #[tokio::test] has its own runtime, the stack lives
/// in its own supervisor process and ends when this process exits.
async fn shared() -> &'static Stack {
    static STACK: OnceCell<Stack> = OnceCell::const_new();
    STACK
        .get_or_init(|| async {
            Stack::start(config("stack-it"))
                .await
                .expect("stack starts")
        })
        .await
}

/// Kills `name`, asserts a new pid within [`RESTART_BOUND`] and health soon after.
async fn kill_and_expect_restart(stack: &Stack, name: &str) {
    let old = stack.kill(name).expect("kill");
    let killed = Instant::now();
    let new = loop {
        match stack.pid(name) {
            Some(pid) if pid != old => break pid,
            _ if killed.elapsed() > RESTART_BOUND => {
                panic!("{name} not restarted within {RESTART_BOUND:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let restarted = killed.elapsed();
    assert!(
        stack::procs::alive(new),
        "{name}: new pid {new} is not alive"
    );
    assert!(
        !stack::procs::alive(old),
        "{name}: old pid {old} still alive"
    );
    let pid = stack
        .wait_restarted(name, old, HEALTHY_AGAIN)
        .await
        .expect("healthy again");
    assert_eq!(pid, new);
    eprintln!(
        "{name}: pid {old} -> {new}, restarted after {restarted:?}, healthy after {:?}",
        killed.elapsed()
    );
}

#[tokio::test]
async fn every_component_is_healthy_with_a_pid_file() {
    let stack = shared().await;
    let names = stack.components();
    assert_eq!(
        names,
        ["order-db", "stock-db", "payment-db", "kafka", "gateway"]
    );
    for status in stack.status().await {
        assert!(status.health.is_ok(), "{status:?}");
        let pid = status
            .pid
            .unwrap_or_else(|| panic!("{} has no live pid", status.name));
        assert!(stack.config().pid_file(&status.name).exists());
        assert_eq!(stack.pid(&status.name), Some(pid));
    }
    assert!(stack.kill("no-such-component").is_err());
}

#[tokio::test]
async fn gateway_answers_health_and_502_without_services() {
    let stack = shared().await;
    let health = client::http_get(&stack.gateway_url(), "/health").await;
    assert_eq!(health, (200, "{\"status\":\"ok\"}".to_string()));
    let order = client::http_get(&stack.gateway_url(), "/orders/find/1").await;
    assert_eq!(order.0, 502, "{order:?}");
}

#[tokio::test]
async fn killed_redis_comes_back_with_acknowledged_writes() {
    let stack = shared().await;
    let url = stack.redis_url("stock").expect("stock has a redis");
    let key = format!("k-{}", uuid::Uuid::new_v4());
    client::set(&url, &key, "42").await;
    // Killed right after the reply: appendfsync always must have made it durable.
    kill_and_expect_restart(stack, "stock-db").await;
    assert_eq!(client::get(&url, &key).await.as_deref(), Some("42"));
}

/// Bounded state (issue 11): every Redis refuses writes beyond maxmemory instead of evicting,
/// rewrites its AOF at set thresholds, and still fsyncs every write.
#[tokio::test]
async fn every_redis_is_bounded_and_durable() {
    let stack = shared().await;
    for service in ["order", "stock", "payment"] {
        let url = stack.redis_url(service).expect("a redis per service");
        for (parameter, want) in [
            ("maxmemory", "1073741824"),
            ("maxmemory-policy", "noeviction"),
            ("auto-aof-rewrite-percentage", "100"),
            ("auto-aof-rewrite-min-size", "67108864"),
            ("appendonly", "yes"),
            ("appendfsync", "always"),
            ("latency-tracking", "no"),
            ("rdbcompression", "no"),
        ] {
            let got = client::config_get(&url, parameter).await;
            assert_eq!(got, want, "{service}-db: {parameter}");
        }
    }
}

#[tokio::test]
async fn killed_kafka_is_restarted_and_serves_metadata_again() {
    let stack = shared().await;
    kill_and_expect_restart(stack, "kafka").await;
    stack
        .wait_healthy(HEALTHY_AGAIN)
        .await
        .expect("whole stack healthy");
}

/// Held by the tests that kill the shared gateway and by those that must not see it die.
static GATEWAY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn killed_gateway_is_restarted_without_leftover_workers() {
    let stack = shared().await;
    let _gateway = GATEWAY.lock().await;
    kill_and_expect_restart(stack, "gateway").await;
    let health = client::http_get(&stack.gateway_url(), "/health").await;
    assert_eq!(health.0, 200, "{health:?}");
}

/// A second stack beside the shared one: its own ports and root; `stop` ends every process
/// and deletes its data.
#[tokio::test]
async fn a_second_stack_runs_beside_and_stops_cleanly() {
    let shared = shared().await;
    let second = Stack::start(config("stack-it-second"))
        .await
        .expect("second stack starts");
    assert_ne!(second.ports(), shared.ports());
    assert_ne!(second.config().root, shared.config().root);
    let pids: Vec<u32> = second
        .components()
        .iter()
        .filter_map(|n| second.pid(n))
        .collect();
    assert_eq!(pids.len(), 5);
    let supervisor = second.supervisor_pid();
    let data = second.config().data_dir();
    assert!(data.exists());
    second.stop().await.expect("stop");
    assert!(!stack::procs::alive(supervisor), "supervisor still runs");
    for pid in pids {
        assert!(!stack::procs::alive(pid), "component pid {pid} still runs");
    }
    assert!(!data.exists(), "ephemeral data dir kept");
    // Other tests kill the shared stack's components meanwhile, so "untouched" means: its
    // supervisor still runs and everything is healthy once their restarts are done.
    assert!(stack::procs::alive(shared.supervisor_pid()));
    shared
        .wait_healthy(HEALTHY_AGAIN)
        .await
        .expect("shared stack untouched");
}

/// The whole stack with two replicas of each service: killing a replica is invisible to
/// clients of the gateway (nginx retries the other one), and the replica comes back.
#[tokio::test]
async fn gateway_hides_a_killed_replica_from_clients() {
    let stack = Stack::start(config("stack-it-full").with_replicas(2).with_services())
        .await
        .expect("full stack starts");
    // Each service process is told how many tokio workers to run (`SERVICE_THREADS`).
    let threads = format!("TOKIO_WORKER_THREADS={}", stack.config().service_threads);
    for name in ["order-1", "stock-2", "payment-1"] {
        let pid = stack.pid(name).expect("service pid");
        let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
        assert!(
            environ.split(|b| *b == 0).any(|v| v == threads.as_bytes()),
            "{name} runs without {threads}"
        );
    }
    let gateway = stack.gateway_url();
    let (status, created) = client::http_post(&gateway, "/stock/item/create/7").await;
    assert_eq!(status, 200, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).expect("json");
    let item = created["item_id"].as_str().expect("item id").to_string();

    let done = std::sync::atomic::AtomicBool::new(false);
    let reads = async {
        let (mut ok, mut failed) = (0, Vec::new());
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let (status, body) = client::http_get(&gateway, &format!("/stock/find/{item}")).await;
            match status {
                200 => ok += 1,
                _ => failed.push(format!("{status} {body}")),
            }
        }
        (ok, failed)
    };
    let kills = async {
        for replica in ["stock-1", "stock-2"] {
            kill_and_expect_restart(&stack, replica).await;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let ((ok, failed), ()) = tokio::join!(reads, kills);
    assert!(ok > 0, "no read went through");
    assert!(
        failed.is_empty(),
        "{} of {} reads failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    stack.stop().await.expect("stop");
}

/// `make up` warms a fresh broker up with checkouts' messages before the services start
/// (`KAFKA_WARMUP_S`): the warm-up runs checkouts, removes its topics and consumer groups, and
/// the stack then serves a checkout of its own.
#[tokio::test]
async fn a_fresh_broker_is_warmed_up_and_its_topics_and_groups_removed() {
    let mut cfg = config("stack-it-warm").with_services();
    // Long enough for the consumer groups to form on a loaded machine (CI's Kafka took 29 s
    // to start once); the warm-up ends sooner when the broker's JIT falls quiet.
    cfg.kafka_warmup_s = 30;
    let stack = Stack::start(cfg).await.expect("stack starts");
    let log = std::fs::read_to_string(stack.config().logs_dir().join("supervisor.log"))
        .expect("supervisor log");
    let warmed = log
        .lines()
        .find_map(|l| l.split("broker warmed up by ").nth(1)?.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        warmed.is_some_and(|n| n > 0),
        "no warm-up checkout in the supervisor's log:\n{log}"
    );

    // The broker's topics and consumer groups whose names say they are the warm-up's.
    let ports = stack.ports();
    let warm_up_leftovers = move || {
        use rdkafka::consumer::Consumer;
        let client: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", format!("127.0.0.1:{}", ports.kafka))
            .create()
            .expect("client");
        let patience = Duration::from_secs(5);
        let metadata = client.fetch_metadata(None, patience).expect("metadata");
        let groups = client.fetch_group_list(None, patience).expect("groups");
        let topics = metadata.topics().iter().map(|t| t.name());
        let groups = groups.groups().iter().map(|g| g.name());
        topics
            .chain(groups)
            .filter(|name| name.starts_with("warmup"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = loop {
        let left = tokio::task::spawn_blocking(warm_up_leftovers)
            .await
            .expect("metadata task");
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(left.is_empty(), "warm-up topics or groups left: {left:?}");

    let gateway = stack.gateway_url();
    let post = client::post_ok;
    let item = post(&gateway, "/stock/item/create/3").await["item_id"].clone();
    let item = item.as_str().expect("item id");
    post(&gateway, &format!("/stock/add/{item}/5")).await;
    let user = post(&gateway, "/payment/create_user").await["user_id"].clone();
    let user = user.as_str().expect("user id");
    post(&gateway, &format!("/payment/add_funds/{user}/10")).await;
    let order = post(&gateway, &format!("/orders/create/{user}")).await["order_id"].clone();
    let order = order.as_str().expect("order id");
    post(&gateway, &format!("/orders/addItem/{order}/{item}/2")).await;
    // The checkout after the warm-up: the services run on topics the warm-up never touched.
    post(&gateway, &format!("/orders/checkout/{order}")).await;
    let (_, body) = client::http_get(&gateway, &format!("/payment/find_user/{user}")).await;
    let credit: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(credit["credit"], 4, "{body}");
    stack.stop().await.expect("stop");
}

/// A service that cannot start fails `Stack::start` fast, with the reason, instead of after
/// the whole start timeout. "Fast" is timed from the service's own first launch: the stages
/// before it (Kafka above all) take what the machine gives them, and in CI three test lanes
/// share two cores.
#[tokio::test]
async fn a_crash_looping_service_fails_the_start_fast() {
    let broken = config("stack-it-broken")
        .with_services()
        .with_service_env("HTTP_ADDR", "not-an-address");
    // The clock measures the start, not cargo bringing the binaries up to date first.
    stack::binaries::ensure(&broken).expect("binaries build");
    let started = Instant::now();
    match Stack::start(broken).await {
        Err(stack::Error::CrashLoop { report, log, .. }) => {
            assert!(report.component.ends_with("-1"), "{report}");
            assert_eq!(report.last_exit, "exit status: 1", "{report}");
            // Five quick exits with backoffs of 0.1 + 0.2 + 0.4 + 0.8 s between them.
            assert!(report.after < Duration::from_secs(30), "{report}");
            let log = std::fs::read_to_string(&log).expect("the replica's log");
            assert!(log.contains("HTTP_ADDR"), "log without the reason: {log}");
        }
        Err(other) => panic!("expected a crash loop, got {other}"),
        Ok(_) => panic!("a stack with a bogus HTTP_ADDR started"),
    }
    // And the launcher returned on the report, not at its start timeout.
    assert!(
        started.elapsed() < stack::handle::START_TIMEOUT / 2,
        "took {:?}",
        started.elapsed()
    );
}

/// Thousands of clients at once (issue 12): the gateway accepts every connection and answers
/// on each, with no transport error. Needs its file limit, backlog and worker connections.
#[tokio::test]
async fn gateway_serves_thousands_of_concurrent_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CLIENTS: usize = 4_000;
    let stack = shared().await;
    let _gateway = GATEWAY.lock().await;
    // Our own side of the connections needs descriptors too.
    assert!(stack::procs::raise_nofile_limit() > 2 * CLIENTS as u64);
    let port = stack.ports().gateway;
    let mut connections = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let c = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
        connections.push(c.expect("the gateway accepts the connection"));
    }
    let mut answers = tokio::task::JoinSet::new();
    for mut c in connections {
        answers.spawn(async move {
            c.write_all(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
                .await?;
            let mut head = [0u8; 12];
            c.read_exact(&mut head).await?;
            // The connection stays open until every client has its answer.
            Ok::<_, std::io::Error>((String::from_utf8_lossy(&head).into_owned(), c))
        });
    }
    let mut open = Vec::with_capacity(CLIENTS);
    let all_answered = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(answer) = answers.join_next().await {
            let (status, c) = answer
                .expect("task")
                .expect("an answer on every connection");
            assert_eq!(status, "HTTP/1.1 200");
            open.push(c);
        }
    })
    .await;
    assert!(
        all_answered.is_ok(),
        "{} of {CLIENTS} connections answered within two minutes",
        open.len()
    );
    assert_eq!(open.len(), CLIENTS);
}
