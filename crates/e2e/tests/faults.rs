//! Crash tests, under both protocols (each test runs once per protocol, on that protocol's
//! stack).
//!
//! Each test crashes one process at a chosen point — with a failpoint (the process aborts on
//! the spot, like a SIGKILL there) or with a real SIGKILL mid-load — lets the watchdog
//! restart it, and checks that every transaction reaches its end with stock and credit
//! conserved. The tests of one protocol share one stack and run one at a time.

use std::path::PathBuf;
use std::time::Duration;

use e2e::{Api, Protocol, Reply, Stack, StackConfig, eventually};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use redis::AsyncCommands;
use tokio::sync::{Mutex, MutexGuard, OnceCell};

const SETTLE: Duration = Duration::from_secs(30);

/// The faults stacks require this token for `batch_init`.
const ADMIN_TOKEN: &str = "faults-admin";

struct Faulty {
    stack: Stack,
    failpoints: PathBuf,
}

/// The stack of this binary, a guard that keeps the crash tests apart, and a client of the
/// stack's gateway.
async fn stack(protocol: Protocol) -> (&'static Faulty, MutexGuard<'static, ()>, Api) {
    static SAGA: (OnceCell<Faulty>, Mutex<()>) = (OnceCell::const_new(), Mutex::const_new(()));
    static TWO_PC: (OnceCell<Faulty>, Mutex<()>) = (OnceCell::const_new(), Mutex::const_new(()));
    let (stack, one_at_a_time) = match protocol {
        Protocol::Saga => &SAGA,
        Protocol::TwoPc => &TWO_PC,
    };
    let guard = one_at_a_time.lock().await;
    let faulty = stack
        .get_or_init(|| async {
            let config = StackConfig::for_tests(&format!("faults-{}", protocol.as_str()))
                .with_protocol(protocol);
            let failpoints = config.root.join("failpoints");
            std::fs::create_dir_all(&failpoints).expect("failpoints dir");
            let config = config
                .with_service_env("FAILPOINTS_DIR", &failpoints.to_string_lossy())
                .with_service_env("ADMIN_TOKEN", ADMIN_TOKEN);
            Faulty {
                stack: e2e::start(config).await,
                failpoints,
            }
        })
        .await;
    (faulty, guard, Api::new(&faulty.stack))
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

    /// A connection to `service`'s Redis. The client's own timeouts (0.5 s to answer) are for
    /// services: this observer reads while three suites share two cores (`make test` once
    /// failed on an HGET that took longer), so it waits longer.
    async fn redis(&self, service: &str) -> redis::aio::MultiplexedConnection {
        let url = self.stack.redis_url(service).expect("redis url");
        let patience = Some(Duration::from_secs(10));
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(patience)
            .set_response_timeout(patience);
        redis::Client::open(url)
            .expect("redis client")
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("redis connection")
    }

    /// True when at least `n` transactions are begun and not finished.
    async fn in_flight_at_least(&self, n: usize) -> bool {
        let active: usize = self
            .redis("order")
            .await
            .zcard("txs:active")
            .await
            .unwrap_or(0);
        active >= n
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) a component without killing it.
    fn freeze(&self, name: &str, frozen: bool) {
        let pid = self.stack.pid(name).expect("pid") as i32;
        let signal = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        nix::sys::signal::kill(Pid::from_raw(pid), signal).expect("signal");
    }

    /// Step records of a participant still waiting for the outcome (2PC prepared, saga
    /// taken and not yet confirmed).
    async fn open_reservations(&self, service: &str) -> usize {
        let mut conn = self.redis(service).await;
        let keys: Vec<String> = conn.keys("step:*").await.expect("keys");
        let mut open = 0;
        for key in keys {
            let state: Option<String> = conn.hget(&key, "state").await.expect("hget");
            open += usize::from(matches!(state.as_deref(), Some("prepared" | "taken")));
        }
        open
    }
}

/// Arms `failpoint` of the coordinator, checks `order` out, asserts that the failpoint crashed
/// order-1, and waits until the watchdog has it running again. Returns the checkout's answer,
/// if it got one.
async fn crash_order_1(faulty: &Faulty, order: &str, failpoint: &str) -> reqwest::Result<Reply> {
    let old = faulty.stack.pid("order-1").expect("order-1 pid");
    faulty.arm(failpoint);
    let checkout = format!("/orders/checkout/{order}");
    let answer = Api::new(&faulty.stack).try_post(&checkout).await;
    assert!(
        !faulty.armed(failpoint),
        "the failpoint {failpoint} was not reached: {answer:?}"
    );
    faulty
        .stack
        .wait_restarted("order-1", old, SETTLE)
        .await
        .expect("order-1 restarted");
    answer
}

async fn coordinator_crash_before_the_decision(protocol: Protocol) {
    let (faulty, _one, api) = stack(protocol).await;
    let (item, user, order) = api.one_item_order(5, 10, 100, 2).await;
    let answer = crash_order_1(faulty, &order, "coordinator_before_decision").await;
    assert!(
        answer.map(|r| !r.status.is_success()).unwrap_or(true),
        "no 2xx from a crashed coordinator"
    );
    let settled = eventually(SETTLE, || async {
        let (stock, credit, paid) = (
            api.stock_of(&item).await,
            api.credit_of(&user).await,
            api.paid(&order).await,
        );
        match protocol {
            // No decision was logged: recovery presumes abort and every reservation returns.
            Protocol::TwoPc => (stock, credit, paid) == (10, 100, false),
            // Saga recovery retries the idempotent actions and finishes the checkout.
            Protocol::Saga => (stock, credit, paid) == (8, 90, true),
        }
    })
    .await;
    assert!(settled, "the interrupted transaction did not reach its end");
    // The client's retry is answered, and nothing is taken twice.
    assert!(api.checkout_until_definite(&order).await.ok());
    assert_eq!(api.holdings(&item, &user).await, (8, 90));
    // The retry's own commit reaches the participants just after its answer.
    let closed = eventually(SETTLE, || faulty.settled()).await;
    assert!(closed, "reservations left open");
}

async fn coordinator_crash_after_logging_commit(protocol: Protocol) {
    let (faulty, _one, api) = stack(protocol).await;
    let (item, user, order) = api.one_item_order(5, 10, 100, 3).await;
    let _ = crash_order_1(faulty, &order, "coordinator_after_decision").await;
    let committed = eventually(SETTLE, || faulty.settled()).await;
    assert!(
        committed,
        "the logged commit did not complete at the participants"
    );
    assert!(api.paid(&order).await);
    assert_eq!(api.holdings(&item, &user).await, (7, 85));
}

async fn participant_crash_after_its_step_applies_it_once(protocol: Protocol) {
    let (faulty, _one, api) = stack(protocol).await;
    for service in ["stock", "payment"] {
        let (item, user, order) = api.one_item_order(4, 10, 100, 2).await;
        let replica = format!("{service}-1");
        let old = faulty.stack.pid(&replica).expect("pid");
        let failpoint = format!("{service}_after_try");
        faulty.arm(&failpoint);
        // The coordinator resends until the restarted participant answers with the result
        // it recorded before it crashed, so the client sees a plain success.
        assert!(api.checkout_until_definite(&order).await.ok());
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
        assert_eq!(api.holdings(&item, &user).await, (8, 92), "{service}");
    }
    let settled = eventually(SETTLE, || faulty.settled()).await;
    assert!(settled, "reservations left open");
}

async fn coordinator_sigkilled_mid_load_conserves_stock_and_credit(protocol: Protocol) {
    let (faulty, _one, api) = stack(protocol).await;
    let item = api.new_item(3, 60).await;
    let orders = api.one_unit_orders(&item, 80, 7).await;
    let old = faulty.stack.pid("order-1").expect("order-1 pid");
    let load = futures::future::join_all(orders.iter().map(|(order, _)| {
        let api = api.clone();
        async move { api.checkout_until_definite(order).await.ok() }
    }));
    // Kill only once checkouts are in flight (transactions begun and not finished), so the
    // crash lands mid-transaction.
    let killer = async {
        let in_flight = eventually(SETTLE, || faulty.in_flight_at_least(5)).await;
        faulty.stack.kill("order-1").expect("kill order-1");
        in_flight
    };
    let (answers, in_flight) = tokio::join!(load, killer);
    assert!(
        in_flight,
        "no checkout was in flight when order-1 was killed"
    );
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

async fn reads_ride_out_a_redis_restart(protocol: Protocol) {
    let (faulty, _one, api) = stack(protocol).await;
    let (item, user, order) = api.one_item_order(5, 10, 100, 1).await;
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

/// Checkout while the broker is frozen (SIGSTOP: connections stay open, nothing answers):
/// every answer is a 503 with `Retry-After`, never a 4xx; once it thaws, every checkout is
/// decided by itself and the books balance.
async fn a_frozen_broker_costs_time_never_correctness(protocol: Protocol) {
    let (faulty, _one, api) = stack(protocol).await;
    let item = api.new_item(2, 100).await;
    let orders = api.one_unit_orders(&item, 20, 10).await;
    faulty.freeze("kafka", true);
    let answers = futures::future::join_all(orders.iter().map(|(order, _)| {
        let api = api.clone();
        async move { api.checkout(order).await }
    }))
    .await;
    faulty.freeze("kafka", false);
    for answer in &answers {
        assert_eq!(answer.status.as_u16(), 503, "{}", answer.body);
        assert_eq!(
            answer.body["error"]
                .as_str()
                .map(|c| c == "unavailable" || c == "timeout"),
            Some(true)
        );
    }
    // Nothing left undecided: every transaction ends by itself, and a retry is answered.
    let settled = eventually(Duration::from_secs(60), || async {
        faulty.settled().await && !faulty.in_flight_at_least(1).await
    })
    .await;
    assert!(settled, "transactions left undecided after the thaw");
    for (order, _) in &orders {
        assert!(api.checkout_until_definite(order).await.ok(), "{order}");
    }
    let mut charged = 0;
    for (_, user) in &orders {
        charged += 10 - api.credit_of(user).await;
    }
    assert_eq!(
        (charged, api.stock_of(&item).await),
        (2 * 20, 80),
        "no drift"
    );
}

/// Commands that cannot be applied (garbage, and a step the ledger's script refuses to
/// run) land on every partition of both command topics; checkouts keep flowing around them.
async fn poisoned_commands_never_stop_a_partition(protocol: Protocol) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let (faulty, _one, api) = stack(protocol).await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set(
            "bootstrap.servers",
            format!("127.0.0.1:{}", faulty.stack.ports().kafka),
        )
        .create()
        .expect("producer");
    let unappliable = |n: usize| {
        format!(
            r#"{{"v":1,"tx":"poison-{n}","reply_to":{{"partition":0}},"sent_ms":{},"body":{{"kind":"step","phase":"try","protocol":"saga","lines":[["nobody",-5]]}}}}"#,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        )
    };
    // More than a replica works on at once (512), so a command that blocked its slot for
    // good would stop consumption altogether; on every partition the stack's topics have.
    let partitions = faulty.stack.config().partitions() as usize;
    for n in 0..640 {
        for topic in ["stock.commands", "payment.commands"] {
            let body = if n % 2 == 0 {
                unappliable(n)
            } else {
                "{not json".to_string()
            };
            let key = format!("poison-{n}");
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(&body)
                .partition((n % partitions) as i32);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .expect("poison sent");
        }
    }
    let item = api.new_item(1, 100).await;
    let orders: Vec<String> = api
        .one_unit_orders(&item, 30, 5)
        .await
        .into_iter()
        .map(|(order, _)| order)
        .collect();
    let answers = futures::future::join_all(orders.iter().map(|order| {
        let api = api.clone();
        async move { api.checkout(order).await }
    }))
    .await;
    for answer in answers {
        assert!(answer.ok(), "{} {}", answer.status, answer.body);
    }
    assert_eq!(api.stock_of(&item).await, 70);
}

/// `batch_init` while checkouts hold the records it would replace: 409, nothing changed.
/// Payment is frozen so that the checkouts stay in flight (stock taken and held, payment
/// unanswered) for as long as the test needs.
async fn batch_init_never_replaces_records_in_a_checkout(protocol: Protocol) {
    let (faulty, _one, open) = stack(protocol).await;
    let api = open.clone().with_token(ADMIN_TOKEN);
    let refused = open.post("/stock/batch_init/10/100/1").await;
    assert_eq!(refused.status.as_u16(), 401, "{}", refused.body);
    api.post("/stock/batch_init/10/100/1").await.expect_ok();
    api.post("/payment/batch_init/10/1000").await.expect_ok();
    api.post("/orders/batch_init/10/10/10/1").await.expect_ok();
    let before: Vec<_> = futures::future::join_all((0..10).map(|i| {
        let api = api.clone();
        async move { api.get(&format!("/orders/find/{i}")).await.expect_ok() }
    }))
    .await;
    faulty.freeze("payment-1", true);
    let checkouts = futures::future::join_all((0..10).map(|i| {
        let api = api.clone();
        async move { api.try_post(&format!("/orders/checkout/{i}")).await }
    }));
    let meddler = async {
        let in_flight = eventually(SETTLE, || faulty.in_flight_at_least(10)).await;
        let held = eventually(SETTLE, || async {
            let mut conn = faulty.redis("stock").await;
            let mut held = 0i64;
            for i in 0..10 {
                held += conn
                    .hget::<_, _, Option<i64>>(format!("item:{i}"), "held")
                    .await
                    .unwrap()
                    .unwrap_or(0);
            }
            held == 20
        })
        .await;
        let orders = api.post("/orders/batch_init/10/10/10/1").await;
        let stock = api.post("/stock/batch_init/10/100/1").await;
        faulty.freeze("payment-1", false);
        (in_flight && held, orders, stock)
    };
    let (answers, (ready, orders, stock)) = tokio::join!(checkouts, meddler);
    assert!(ready, "the checkouts were not in flight and holding stock");
    assert_eq!(orders.expect_client_error(), "records_in_use");
    assert_eq!(stock.expect_client_error(), "records_in_use");
    for (i, order) in before.iter().enumerate() {
        let now = api.get(&format!("/orders/find/{i}")).await.expect_ok();
        assert_eq!(
            (&now["items"], &now["user_id"]),
            (&order["items"], &order["user_id"])
        );
    }
    // Every checkout is decided; nothing was lost or made up by the refused replacements.
    let settled = eventually(SETTLE, || faulty.settled()).await;
    assert!(settled, "reservations left open");
    let mut sold = 0;
    for (i, answer) in answers.iter().enumerate() {
        let paid = api.paid(&i.to_string()).await;
        if let Ok(answer) = answer
            && (answer.ok() || answer.status.is_client_error())
        {
            assert_eq!(paid, answer.ok(), "order {i}");
        }
        sold += 2 * i64::from(paid);
    }
    let mut left = 0;
    for i in 0..10 {
        left += api.stock_of(&i.to_string()).await;
    }
    assert_eq!(left, 1000 - sold);
    let quiet = eventually(SETTLE, || async { !faulty.in_flight_at_least(1).await }).await;
    assert!(quiet, "checkouts left in flight");
    api.post("/orders/batch_init/10/10/10/1").await.expect_ok();
}

e2e::both_protocols!(
    coordinator_crash_before_the_decision,
    coordinator_crash_after_logging_commit,
    participant_crash_after_its_step_applies_it_once,
    coordinator_sigkilled_mid_load_conserves_stock_and_credit,
    reads_ride_out_a_redis_restart,
    a_frozen_broker_costs_time_never_correctness,
    poisoned_commands_never_stop_a_partition,
    batch_init_never_replaces_records_in_a_checkout
);
