//! Overload and outages, against a stack whose order service admits only 8 checkouts at a
//! time (and queues as many): a burst far beyond the bound is answered with 2xx and 503 only,
//! in bounded memory, and full capacity is back right after; open-loop arrivals through a
//! frozen broker cost time, never memory, and are served again within ten seconds of the thaw.

use std::time::Duration;

use e2e::{Api, Stack, StackConfig};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::time::Instant;

const BOUND: usize = 8;

async fn shop(api: &Api, orders: usize) -> (String, Vec<(String, String)>) {
    let item = api.new_item(1, 1_000_000).await;
    let made = futures::future::join_all((0..orders).map(|_| {
        let (api, item) = (api.clone(), item.clone());
        async move {
            let user = api.new_user(10).await;
            (api.new_order(&user, &[(&item, 1)]).await, user)
        }
    }))
    .await;
    (item, made)
}

/// Resident memory of a component's process, in MiB.
fn rss_mib(stack: &Stack, name: &str) -> u64 {
    let pid = stack.pid(name).expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024
}

#[tokio::test]
async fn overload_is_shed_and_outages_cost_only_time() {
    let config = StackConfig::for_tests("overload")
        .with_service_env("MAX_INFLIGHT_CHECKOUTS", &BOUND.to_string());
    let stack = e2e::start(config).await;
    let api = Api::new(&stack);
    a_burst_beyond_the_bound_is_shed(&stack, &api).await;
    a_frozen_broker_costs_time_not_memory(&stack, &api).await;
}

async fn a_burst_beyond_the_bound_is_shed(stack: &Stack, api: &Api) {
    let (item, orders) = shop(api, 400).await;
    let answers = futures::future::join_all(orders.iter().map(|(order, _)| {
        let api = api.clone();
        async move { api.try_post(&format!("/orders/checkout/{order}")).await }
    }))
    .await;
    let (mut paid, mut shed) = (Vec::new(), Vec::new());
    for ((order, _), answer) in orders.iter().zip(&answers) {
        let answer = answer.as_ref().expect("a transport error under overload");
        match answer.status.as_u16() {
            200 => paid.push(order),
            503 => {
                assert_eq!(answer.body["error"], "overloaded", "{}", answer.body);
                shed.push(order);
            }
            other => panic!(
                "only 2xx and 503 under overload, got {other} {}",
                answer.body
            ),
        }
    }
    println!(
        "burst of 400 over a bound of {BOUND}: {} paid, {} shed",
        paid.len(),
        shed.len()
    );
    assert!(
        !shed.is_empty(),
        "nothing was shed: the bound is not enforced"
    );
    assert!(
        paid.len() >= BOUND,
        "fewer checkouts than the bound went through"
    );
    let rss = rss_mib(stack, "order-1");
    assert!(rss < 150, "order service RSS {rss} MiB after the burst");
    // Capacity is back at once: the shed ones, retried at the bound, all go through.
    for batch in shed.chunks(BOUND) {
        let answers = futures::future::join_all(batch.iter().map(|order| {
            let api = api.clone();
            async move { api.checkout(&order).await }
        }))
        .await;
        assert!(answers.iter().all(|a| a.ok()), "{answers:?}");
    }
    assert_eq!(api.stock_of(&item).await, 1_000_000 - 400);
    for (_, user) in orders.iter().step_by(37) {
        assert_eq!(api.credit_of(user).await, 9);
    }
}

async fn a_frozen_broker_costs_time_not_memory(stack: &Stack, api: &Api) {
    const RATE: u64 = 50;
    const SECONDS: u64 = 30;
    let (freeze, thaw) = (Duration::from_secs(4), Duration::from_secs(12));
    let (_, orders) = shop(api, (RATE * SECONDS) as usize).await;
    let kafka = Pid::from_raw(stack.pid("kafka").expect("kafka pid") as i32);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    let mut arrivals = Vec::new();
    let (mut frozen, mut thawed, mut peak_rss) = (false, false, 0);
    for (order, _) in &orders {
        tick.tick().await;
        let at = started.elapsed();
        if !frozen && at >= freeze {
            nix::sys::signal::kill(kafka, Signal::SIGSTOP).expect("SIGSTOP");
            frozen = true;
        }
        if frozen && !thawed && at >= thaw {
            nix::sys::signal::kill(kafka, Signal::SIGCONT).expect("SIGCONT");
            thawed = true;
        }
        if arrivals.len() % RATE as usize == 0 {
            peak_rss = peak_rss.max(rss_mib(stack, "order-1"));
        }
        let api = api.clone();
        let path = format!("/orders/checkout/{order}");
        // Each client gives up after 2 s, as open-loop clients do.
        arrivals.push((
            at,
            tokio::spawn(async move {
                let sent = Instant::now();
                let answer =
                    tokio::time::timeout(Duration::from_secs(2), api.try_post(&path)).await;
                matches!(answer, Ok(Ok(r)) if r.ok()) && sent.elapsed() < Duration::from_secs(2)
            }),
        ));
    }
    if !thawed {
        nix::sys::signal::kill(kafka, Signal::SIGCONT).expect("SIGCONT");
    }
    let mut late = (0, 0);
    for (at, answered) in arrivals {
        let answered = answered.await.expect("client task");
        // From 10 s after the thaw on (the broker's consumer groups have rejoined), clients
        // are served in time again.
        if at >= thaw + Duration::from_secs(10) {
            late.0 += 1;
            late.1 += usize::from(answered);
        }
    }
    println!(
        "frozen broker: {} of {} late arrivals served in time; peak order RSS {peak_rss} MiB",
        late.1, late.0
    );
    assert!(late.0 > 0);
    assert!(
        late.1 * 100 >= late.0 * 90,
        "{} of {} served after the thaw",
        late.1,
        late.0
    );
    assert!(
        peak_rss < 150,
        "order service RSS {peak_rss} MiB during the outage"
    );
}
