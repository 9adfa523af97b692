//! Observability of the running services: every service's `/metrics` is valid Prometheus
//! text (checked by `promtool`) and counts checkouts; one checkout is one trace whose id the
//! order, stock and payment logs all carry; the console shows a checkout in a real headless
//! browser.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use e2e::{Api, Stack, StackConfig, eventually};
use tokio::io::AsyncWriteExt;
use tokio::sync::{MutexGuard, OnceCell};

/// The tests take turns: the console lists the latest transactions, so another test's 200
/// checkouts running at the same time could push this test's order off the page.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One stack for this binary. Participants log each step at debug level, so that the trace
/// test can find a checkout's lines in their logs.
async fn stack() -> &'static Stack {
    static STACK: OnceCell<Stack> = OnceCell::const_new();
    STACK
        .get_or_init(|| async {
            let mut config = StackConfig::for_tests("observability");
            config.rust_log = "info,common::ledger=debug,order::checkout=debug".into();
            e2e::start(config).await
        })
        .await
}

/// Waits for this test's turn; then the stack and a client of its gateway.
async fn my_turn() -> (MutexGuard<'static, ()>, &'static Stack, Api) {
    let turn = ONE_AT_A_TIME.lock().await;
    let stack = stack().await;
    (turn, stack, Api::new(stack))
}

/// The first replica of each service, by its own port.
fn service_urls(stack: &Stack) -> [(&'static str, String); 3] {
    let ports = stack.ports();
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    [
        ("order", url(ports.order_base + 1)),
        ("stock", url(ports.stock_base + 1)),
        ("payment", url(ports.payment_base + 1)),
    ]
}

/// A client whose every request has a deadline: a service that never answers fails the test
/// instead of holding the suite.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

async fn metrics_of(base: &str) -> String {
    let response = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {base}/metrics: {e}"));
    assert!(
        response.status().is_success(),
        "{base}/metrics answered {}",
        response.status()
    );
    response.text().await.expect("metrics body")
}

/// The sum of every series of `name` (all label sets).
fn total(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs `promtool check metrics` on `exposition`; panics with its complaints.
async fn promtool_check(service: &str, exposition: &str) {
    let spawned = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => panic!(
            "promtool is needed for this test and could not be run ({e}); install it with `apt-get install -y prometheus`"
        ),
    };
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(exposition.as_bytes())
        .await
        .expect("write to promtool");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("promtool ends within a minute")
        .expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool rejects the metrics of {service}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn every_service_exposes_valid_metrics_and_checkouts_are_counted() {
    let (_turn, stack, api) = my_turn().await;
    let [(_, order_url), _, _] = service_urls(stack);
    let before = total(&metrics_of(&order_url).await, "checkouts_total");

    let item = api.new_item(1, 1000).await;
    let user = api.new_user(1000).await;
    let orders: Vec<String> = futures::future::join_all((0..200).map(|_| {
        let (api, item, user) = (api.clone(), item.clone(), user.clone());
        async move { api.new_order(&user, &[(&item, 1)]).await }
    }))
    .await;
    let answers = futures::future::join_all(orders.iter().map(|order| {
        let api = api.clone();
        async move { api.post(&format!("/orders/checkout/{order}")).await }
    }))
    .await;
    assert!(answers.iter().all(|a| a.ok()), "every checkout is paid");

    let after = metrics_of(&order_url).await;
    assert!(
        total(&after, "checkouts_total") - before >= 200.0,
        "checkouts_total grew by {} for 200 checkouts",
        total(&after, "checkouts_total") - before
    );
    assert!(after.contains("checkouts_total{protocol=\"saga\",outcome=\"committed\"}"));
    assert!(after.contains("checkout_duration_seconds_bucket{"));
    assert!(after.contains("http_requests_total{"));
    assert!(after.contains("kafka_produce_duration_seconds_bucket{"));
    assert!(after.contains("redis_script_duration_seconds_bucket{script=\"transition\""));

    for (service, url) in service_urls(stack) {
        let exposition = metrics_of(&url).await;
        if service != "order" {
            assert!(
                exposition.contains("participant_steps_total{"),
                "{service} counts its steps"
            );
        }
        promtool_check(service, &exposition).await;
    }
    // The Redis memory gauges come from a background read every 5 s.
    let (_, stock_url) = &service_urls(stack)[1];
    assert!(
        eventually(Duration::from_secs(15), || async {
            total(&metrics_of(stock_url).await, "redis_used_memory_bytes") > 0.0
        })
        .await,
        "redis_used_memory_bytes is reported"
    );
}

/// A W3C trace id of our own, sent in `traceparent`.
fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The lines of a log that contain `needle`, without colour codes.
fn log_lines_with(path: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(needle))
        .map(without_ansi)
        .collect()
}

fn without_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence ends with its first letter.
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(c);
        }
    }
    plain
}

#[tokio::test]
async fn one_checkout_is_one_trace_across_the_services() {
    let (_turn, stack, api) = my_turn().await;
    let (_item, _user, order) = api.one_item_order(5, 10, 100, 2).await;
    let trace_id = new_trace_id();
    let response = http()
        .post(format!("{}/orders/checkout/{order}", stack.gateway_url()))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("checkout");
    assert!(
        response.status().is_success(),
        "checkout answered {}",
        response.status()
    );

    for service in ["order-1", "stock-1", "payment-1"] {
        let log = stack.log_path(service);
        let found = eventually(Duration::from_secs(15), || {
            let log = log.clone();
            let trace_id = trace_id.clone();
            async move { !log_lines_with(&log, &trace_id).is_empty() }
        })
        .await;
        assert!(found, "{service}'s log has no line of trace {trace_id}");
        // Every line of the checkout there also names its transaction.
        for line in log_lines_with(&log, &trace_id) {
            assert!(
                line.contains("tx{id=") || line.contains("command{tx="),
                "{service}: a line of the trace without its transaction id: {line}"
            );
        }
    }
}

/// The page as a headless Chromium renders it after running its script for a while.
async fn rendered_dom(url: &str, profile: &Path) -> String {
    let run = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(60), run).await {
        Ok(Ok(out)) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(Err(e)) => panic!(
            "chromium is needed for this test and could not be run ({e}); install it with `apt-get install -y chromium`"
        ),
        Err(_) => String::new(),
    }
}

#[tokio::test]
async fn the_console_shows_a_checkout_in_a_real_browser() {
    let (_turn, stack, api) = my_turn().await;
    let (_item, _user, order) = api.one_item_order(3, 5, 100, 1).await;
    api.post(&format!("/orders/checkout/{order}"))
        .await
        .expect_ok();

    let [(_, order_url), _, _] = service_urls(stack);
    let state = http()
        .get(format!("{order_url}/console/api/state"))
        .send()
        .await
        .expect("console state");
    assert!(state.status().is_success());
    let profile = stack.config().root.join("chromium-profile");
    let url = format!("{order_url}/console/");
    // Polls until the page shows the order, within a deadline (each render runs the page's
    // script for 5 s of virtual time, several polls).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let shown = loop {
        let dom = rendered_dom(&url, &profile).await;
        if dom.contains(&order) {
            break Ok(dom);
        }
        if tokio::time::Instant::now() > deadline {
            break Err(dom);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    match shown {
        Ok(dom) => assert!(dom.contains("checkout console")),
        Err(dom) => panic!("order {order} is not on the console page; the page was:\n{dom}"),
    }
}
