//! Fault tolerance with two replicas of every service, under load: while checkouts run, a
//! killer SIGKILLs one component after another (an order replica, a stock replica, a payment
//! replica, each Redis, Kafka, the gateway) and the watchdog restarts each. Clients retry a
//! checkout that got no answer or a 5xx, as the contract allows. Afterwards stock and credit
//! must be conserved exactly and no client may have been lied to.
//!
//! Runs once per protocol; the two stacks run side by side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{Api, Protocol, StackConfig, eventually};
use futures::StreamExt;
use rand::Rng;
use tokio::time::Instant;

const ITEMS: usize = 20;
const STOCK: i64 = 150;
const USERS: usize = 300;
const CREDIT: i64 = 25;
/// Orders ready to check out: at `RATE`, over two and a half minutes of load, more than the
/// killer needs even on a busy machine (on a clean clone, with the other suites running
/// beside it, the eight kills and recoveries took over a minute); the load stops once the
/// killer is done, and the test fails if it ran out first.
const ORDERS: usize = 4000;
/// Checkouts started per second.
const RATE: u64 = 25;

/// What the clients saw while each component was down, and how long until checkouts
/// succeeded again after its kill.
#[derive(Default)]
struct Log {
    phase: String,
    errors: HashMap<String, usize>,
    killed_at: HashMap<String, Instant>,
    back_after: HashMap<String, Duration>,
}

async fn checkouts_survive_every_kind_of_crash(protocol: Protocol) {
    let config = StackConfig::for_tests(&format!("chaos-{}", protocol.as_str()))
        .with_protocol(protocol)
        .with_replicas(2);
    let stack = e2e::start(config).await;
    let api = Api::new(&stack);

    let mut rng = rand::rng();
    let mut items = Vec::new();
    for _ in 0..ITEMS {
        let price = rng.random_range(1..=5);
        items.push((api.new_item(price, STOCK).await, price));
    }
    let users: Vec<String> = futures::future::join_all((0..USERS).map(|_| {
        let api = api.clone();
        async move { api.new_user(CREDIT).await }
    }))
    .await;
    let plans: Vec<(String, Vec<(String, i64)>)> = (0..ORDERS)
        .map(|_| {
            let user = users[rng.random_range(0..USERS)].clone();
            let lines = (0..rng.random_range(1..=3))
                .map(|_| (items[rng.random_range(0..ITEMS)].0.clone(), 1))
                .collect();
            (user, lines)
        })
        .collect();
    let orders: Vec<String> = futures::stream::iter(plans.iter().map(|(user, lines)| {
        let api = api.clone();
        async move {
            let lines: Vec<(&str, i64)> = lines.iter().map(|(i, q)| (i.as_str(), *q)).collect();
            api.new_order(user, &lines).await
        }
    }))
    .buffered(32)
    .collect()
    .await;

    let log = Arc::new(Mutex::new(Log {
        phase: "none".into(),
        ..Log::default()
    }));
    // Set by the killer when it is done; cleared by the load if it ran out of orders first.
    let killing = Arc::new(AtomicBool::new(true));
    let loading = Arc::new(AtomicBool::new(true));
    let load = {
        let (api, log) = (api.clone(), log.clone());
        let (killing, loading) = (killing.clone(), loading.clone());
        let orders = orders.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
            let mut running = Vec::new();
            for order in orders {
                if !killing.load(Ordering::SeqCst) {
                    break;
                }
                tick.tick().await;
                let (api, log) = (api.clone(), log.clone());
                running.push(tokio::spawn(
                    async move { checkout(&api, &order, &log).await },
                ));
            }
            loading.store(false, Ordering::SeqCst);
            let mut answers = Vec::new();
            for task in running {
                answers.push(task.await.expect("checkout task"));
            }
            answers
        })
    };

    let victims = [
        "order-1",
        "stock-1",
        "payment-2",
        "order-db",
        "stock-db",
        "payment-db",
        "kafka",
        "gateway",
    ];
    for victim in victims {
        tokio::time::sleep(Duration::from_secs(2)).await; // spacing between kills, not a wait for state
        assert!(
            loading.load(Ordering::SeqCst),
            "the load ran out of orders before {victim} was killed"
        );
        let old = stack.pid(victim).expect("pid");
        {
            let mut log = log.lock().unwrap();
            log.phase = victim.to_string();
            log.killed_at.insert(victim.to_string(), Instant::now());
        }
        stack.kill(victim).expect("kill");
        stack
            .wait_restarted(victim, old, Duration::from_secs(90))
            .await
            .expect("restarted");
        // The next kill waits until checkouts are answered again, so each error is counted
        // against the crash that caused it.
        let recovered = eventually(Duration::from_secs(90), || {
            let log = log.clone();
            async move { log.lock().unwrap().back_after.contains_key(victim) }
        })
        .await;
        assert!(
            recovered,
            "checkouts never recovered after killing {victim}"
        );
    }
    assert!(
        loading.load(Ordering::SeqCst),
        "the load ran out of orders before the last recovery"
    );
    killing.store(false, Ordering::SeqCst);
    let answers = load.await.expect("load");
    stack
        .wait_healthy(Duration::from_secs(60))
        .await
        .expect("healthy after the killing");

    let service_errors = report(&log.lock().unwrap(), &victims, protocol);

    // Quiet: every transaction reaches its end by itself; then the books must balance.
    let paid_of = |answers: &[(String, bool)]| {
        answers
            .iter()
            .filter(|(_, ok)| *ok)
            .map(|(o, _)| o.clone())
            .collect::<Vec<_>>()
    };
    let paid = paid_of(&answers);
    assert!(!paid.is_empty(), "some checkouts succeed");
    let balanced = eventually(Duration::from_secs(60), || {
        let api = api.clone();
        let (items, users, answers) = (&items, &users, &answers);
        let (plans, orders) = (&plans[..answers.len()], &orders[..answers.len()]);
        async move { books_balance(&api, items, users, plans, orders, answers).await }
    })
    .await;
    assert!(
        balanced,
        "stock or credit not conserved, or a client was lied to"
    );
    assert_eq!(
        service_errors, 0,
        "killing a service replica must be invisible with two replicas"
    );
}

/// Prints what the clients saw per component killed; returns the errors seen while a
/// service replica was down.
fn report(log: &Log, victims: &[&str], protocol: Protocol) -> usize {
    let mut total_errors = 0;
    for victim in victims.iter().copied() {
        let errors = log.errors.get(victim).copied().unwrap_or(0);
        total_errors += errors;
        println!(
            "{}: killed {victim}: {errors} client-visible errors, checkouts answered again after {:?}",
            protocol.as_str(),
            log.back_after.get(victim)
        );
    }
    println!(
        "{}: {total_errors} client-visible errors in all",
        protocol.as_str()
    );
    let service_errors: usize = ["order-1", "stock-1", "payment-2"]
        .iter()
        .map(|v| log.errors.get(*v).copied().unwrap_or(0))
        .sum();
    service_errors
}

/// Checks out until a definite answer (2xx or 4xx), counting what the client had to retry.
async fn checkout(api: &Api, order: &str, log: &Mutex<Log>) -> (String, bool) {
    let path = format!("/orders/checkout/{order}");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let sent = Instant::now();
        let answer = api.try_post(&path).await;
        let definite = match &answer {
            Ok(r) if r.status.is_success() => Some(true),
            Ok(r) if r.status.is_client_error() => Some(false),
            _ => None,
        };
        if let Some(ok) = definite {
            record_answer(&mut log.lock().unwrap(), sent);
            return (order.to_string(), ok);
        }
        {
            let mut log = log.lock().unwrap();
            let phase = log.phase.clone();
            *log.errors.entry(phase).or_default() += 1;
        }
        assert!(
            Instant::now() < deadline,
            "checkout of {order} never got a definite answer: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Notes the first definite answer to a checkout sent after the latest kill.
fn record_answer(log: &mut Log, sent: Instant) {
    let phase = log.phase.clone();
    if let Some(killed) = log.killed_at.get(&phase).copied()
        && sent >= killed
        && !log.back_after.contains_key(&phase)
    {
        log.back_after
            .insert(phase, sent.elapsed() + (sent - killed));
    }
}

/// Per item, stock taken = quantities in paid orders; per user, credit taken = cost of paid
/// orders; nothing negative; an order answered 2xx is paid and one answered 4xx is not.
async fn books_balance(
    api: &Api,
    items: &[(String, i64)],
    users: &[String],
    plans: &[(String, Vec<(String, i64)>)],
    orders: &[String],
    answers: &[(String, bool)],
) -> bool {
    let answered: HashMap<&str, bool> = answers.iter().map(|(o, ok)| (o.as_str(), *ok)).collect();
    let price: HashMap<&str, i64> = items.iter().map(|(i, p)| (i.as_str(), *p)).collect();
    let mut sold: HashMap<&str, i64> = HashMap::new();
    let mut spent: HashMap<&str, i64> = HashMap::new();
    for (order, (user, lines)) in orders.iter().zip(plans) {
        let paid = api.paid(order).await;
        if paid != answered[order.as_str()] {
            return false;
        }
        if paid {
            for (item, quantity) in lines {
                *sold.entry(item.as_str()).or_default() += quantity;
                *spent.entry(user.as_str()).or_default() += quantity * price[item.as_str()];
            }
        }
    }
    for (item, _) in items {
        let left = api.stock_of(item).await;
        if left < 0 || STOCK - left != sold.get(item.as_str()).copied().unwrap_or(0) {
            return false;
        }
    }
    for user in users {
        let left = api.credit_of(user).await;
        if left < 0 || CREDIT - left != spent.get(user.as_str()).copied().unwrap_or(0) {
            return false;
        }
    }
    true
}

e2e::both_protocols!(checkouts_survive_every_kind_of_crash);
