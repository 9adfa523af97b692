//! Crash tests both protocols share; included by `faults_saga.rs` and `faults_2pc.rs`.
//!
//! Each test crashes one process at a chosen point — with a failpoint (the process aborts on
//! the spot, like a SIGKILL there) or with a real SIGKILL mid-load — lets the watchdog
//! restart it, and checks that every transaction reaches its end with stock and credit
//! conserved. The tests share one stack and run one at a time.

use std::path::PathBuf;
use std::time::Duration;

use e2e::{Api, Protocol, Stack, StackConfig, eventually};
use redis::AsyncCommands;
use tokio::sync::{Mutex, MutexGuard, OnceCell};

use super::PROTOCOL;

const SETTLE: Duration = Duration::from_secs(30);

struct Faulty {
    stack: Stack,
    failpoints: PathBuf,
}

/// The stack of this binary, and a guard that keeps the crash tests apart.
async fn stack() -> (&'static Faulty, MutexGuard<'static, ()>) {
    static STACK: OnceCell<Faulty> = OnceCell::const_new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());
    let guard = ONE_AT_A_TIME.lock().await;
    let faulty = STACK
        .get_or_init(|| async {
            let config = StackConfig::for_tests(&format!("faults-{}", PROTOCOL.as_str()))
                .with_protocol(PROTOCOL);
            let failpoints = config.root.join("failpoints");
            std::fs::create_dir_all(&failpoints).expect("failpoints dir");
            let config = config.with_service_env("FAILPOINTS_DIR", &failpoints.to_string_lossy());
            Faulty {
                stack: e2e::start(config).await,
                failpoints,
            }
        })
        .await;
    (faulty, guard)
}

impl Faulty {
    fn arm(&self, failpoint: &str) {
        std::fs::write(self.failpoints.join(failpoint), b"").expect("arm failpoint");
    }

    fn armed(&self, failpoint: &str) -> bool {
        self.failpoints.join(failpoint).exists()
    }

    /// True when no participant waits for an outcome any more.
    async fn settled(&self) -> bool {
        self.open_reservations("stock").await + self.open_reservations("payment").await == 0
    }

    /// Step records of a participant still waiting for the outcome (2PC prepared, saga
    /// taken and not yet confirmed).
    async fn open_reservations(&self, service: &str) -> usize {
        let url = self.stack.redis_url(service).expect("redis url");
        let client = redis::Client::open(url).expect("redis client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let keys: Vec<String> = conn.keys("step:*").await.expect("keys");
        let mut open = 0;
        for key in keys {
            let state: Option<String> = conn.hget(&key, "state").await.expect("hget");
            open += usize::from(matches!(state.as_deref(), Some("prepared" | "taken")));
        }
        open
    }
}

/// A shop with one order of `quantity` units at `price` for a user with `credit`.
async fn shop(
    api: &Api,
    stock: i64,
    price: i64,
    credit: i64,
    quantity: i64,
) -> (String, String, String) {
    let item = api.new_item(price, stock).await;
    let user = api.new_user(credit).await;
    let order = api.new_order(&user, &[(&item, quantity)]).await;
    (item, user, order)
}

/// Retries a checkout until it gets a definite (2xx or 4xx) answer, as a client would.
async fn checkout_until_definite(api: &Api, order: &str) -> bool {
    let path = format!("/orders/checkout/{order}");
    for _ in 0..60 {
        match api.try_post(&path).await {
            Ok(reply) if reply.status.is_success() => return true,
            Ok(reply) if reply.status.is_client_error() => return false,
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    panic!("checkout of {order} never got a definite answer");
}

#[tokio::test]
async fn coordinator_crash_before_the_decision() {
    let (faulty, _one) = stack().await;
    let api = Api::new(&faulty.stack);
    let (item, user, order) = shop(&api, 10, 5, 100, 2).await;
    let old = faulty.stack.pid("order-1").expect("order-1 pid");
    faulty.arm("coordinator_before_decision");
    let answer = api.try_post(&format!("/orders/checkout/{order}")).await;
    assert!(
        !faulty.armed("coordinator_before_decision"),
        "the failpoint was not reached: {answer:?}"
    );
    assert!(
        answer.map(|r| !r.status.is_success()).unwrap_or(true),
        "no 2xx from a crashed coordinator"
    );
    faulty
        .stack
        .wait_restarted("order-1", old, SETTLE)
        .await
        .expect("order-1 restarted");
    let settled = eventually(SETTLE, || async {
        let (stock, credit, paid) = (
            api.stock_of(&item).await,
            api.credit_of(&user).await,
            api.paid(&order).await,
        );
        match PROTOCOL {
            // No decision was logged: recovery presumes abort and every reservation returns.
            Protocol::TwoPc => (stock, credit, paid) == (10, 100, false),
            // Saga recovery retries the idempotent actions and finishes the checkout.
            Protocol::Saga => (stock, credit, paid) == (8, 90, true),
        }
    })
    .await;
    assert!(settled, "the interrupted transaction did not reach its end");
    // The client's retry is answered, and nothing is taken twice.
    assert!(checkout_until_definite(&api, &order).await);
    assert_eq!(
        (api.stock_of(&item).await, api.credit_of(&user).await),
        (8, 90)
    );
    // The retry's own commit reaches the participants just after its answer.
    let closed = eventually(SETTLE, || faulty.settled()).await;
    assert!(closed, "reservations left open");
}

#[tokio::test]
async fn coordinator_crash_after_logging_commit() {
    let (faulty, _one) = stack().await;
    let api = Api::new(&faulty.stack);
    let (item, user, order) = shop(&api, 10, 5, 100, 3).await;
    let old = faulty.stack.pid("order-1").expect("order-1 pid");
    faulty.arm("coordinator_after_decision");
    let _ = api.try_post(&format!("/orders/checkout/{order}")).await;
    assert!(
        !faulty.armed("coordinator_after_decision"),
        "the failpoint was not reached"
    );
    faulty
        .stack
        .wait_restarted("order-1", old, SETTLE)
        .await
        .expect("order-1 restarted");
    let committed = eventually(SETTLE, || faulty.settled()).await;
    assert!(
        committed,
        "the logged commit did not complete at the participants"
    );
    assert!(api.paid(&order).await);
    assert_eq!(
        (api.stock_of(&item).await, api.credit_of(&user).await),
        (7, 85)
    );
}

#[tokio::test]
async fn participant_crash_after_its_step_applies_it_once() {
    let (faulty, _one) = stack().await;
    let api = Api::new(&faulty.stack);
    for service in ["stock", "payment"] {
        let (item, user, order) = shop(&api, 10, 4, 100, 2).await;
        let replica = format!("{service}-1");
        let old = faulty.stack.pid(&replica).expect("pid");
        let failpoint = format!("{service}_after_try");
        faulty.arm(&failpoint);
        // The coordinator resends until the restarted participant answers with the result
        // it recorded before it crashed, so the client sees a plain success.
        assert!(checkout_until_definite(&api, &order).await);
        assert!(
            !faulty.armed(&failpoint),
            "the {service} failpoint was not reached"
        );
        faulty
            .stack
            .wait_restarted(&replica, old, SETTLE)
            .await
            .expect("participant restarted");
        assert!(api.paid(&order).await);
        assert_eq!(
            (api.stock_of(&item).await, api.credit_of(&user).await),
            (8, 92),
            "{service}"
        );
    }
    let settled = eventually(SETTLE, || faulty.settled()).await;
    assert!(settled, "reservations left open");
}

#[tokio::test]
async fn coordinator_sigkilled_mid_load_conserves_stock_and_credit() {
    let (faulty, _one) = stack().await;
    let api = Api::new(&faulty.stack);
    let item = api.new_item(3, 60).await;
    let mut orders = Vec::new();
    for _ in 0..80 {
        let user = api.new_user(7).await;
        orders.push((api.new_order(&user, &[(&item, 1)]).await, user));
    }
    let old = faulty.stack.pid("order-1").expect("order-1 pid");
    let load = futures::future::join_all(orders.iter().map(|(order, _)| {
        let api = api.clone();
        async move { checkout_until_definite(&api, order).await }
    }));
    let killer = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        faulty.stack.kill("order-1").expect("kill order-1");
    };
    let (answers, ()) = tokio::join!(load, killer);
    faulty
        .stack
        .wait_restarted("order-1", old, SETTLE)
        .await
        .expect("order-1 restarted");
    let paid = answers.iter().filter(|ok| **ok).count() as i64;
    assert_eq!(paid, 60, "the stock sells out exactly");
    let settled = eventually(SETTLE, || async {
        let mut charged = 0;
        for (_, user) in &orders {
            charged += 7 - api.credit_of(user).await;
        }
        charged == 3 * paid && api.stock_of(&item).await == 60 - paid
    })
    .await;
    assert!(settled, "stock or credit not conserved after the crash");
    for ((order, _), answered_paid) in orders.iter().zip(&answers) {
        assert_eq!(api.paid(order).await, *answered_paid, "order {order}");
    }
}

#[tokio::test]
async fn reads_ride_out_a_redis_restart() {
    let (faulty, _one) = stack().await;
    let api = Api::new(&faulty.stack);
    let (item, user, order) = shop(&api, 10, 5, 100, 1).await;
    for (db, path) in [
        ("stock-db", format!("/stock/find/{item}")),
        ("payment-db", format!("/payment/find_user/{user}")),
        ("order-db", format!("/orders/find/{order}")),
    ] {
        let old = faulty.stack.kill(db).expect("kill");
        // Asked at once, while the database is down: the service waits for it instead of
        // answering 503.
        let answer = api.get(&path).await;
        assert!(
            answer.ok(),
            "{path} while {db} restarts: {} {}",
            answer.status,
            answer.body
        );
        faulty
            .stack
            .wait_restarted(db, old, SETTLE)
            .await
            .expect("restarted");
    }
}
