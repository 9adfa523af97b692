//! Test support for the end-to-end suites: one real stack per test binary and protocol
//! (started on first use, stopped when the test process exits) and a small HTTP client;
//! and, for service-level tests, services spawned in the test process ([`spawn`]).

pub mod spawn;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
pub use spawn::{App, Service, Shop, Topics, spawn_app, spawn_shop};
pub use stack::{Protocol, Stack, StackConfig};
use tokio::sync::OnceCell;

/// The stack of this test binary, started on first use.
pub async fn shared_stack(protocol: Protocol) -> &'static Stack {
    static SAGA: OnceCell<Stack> = OnceCell::const_new();
    static TWO_PC: OnceCell<Stack> = OnceCell::const_new();
    let cell = match protocol {
        Protocol::Saga => &SAGA,
        Protocol::TwoPc => &TWO_PC,
    };
    cell.get_or_init(|| async move {
        start(StackConfig::for_tests(&format!("e2e-{}", protocol.as_str())).with_protocol(protocol))
            .await
    })
    .await
}

/// Starts a private stack (for tests that kill things), panicking with its logs if it fails.
pub async fn start(config: StackConfig) -> Stack {
    match Stack::start(config).await {
        Ok(stack) => stack,
        Err(e) => panic!("the test stack did not start: {e}"),
    }
}

/// An HTTP client for the public API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    /// Sent as `Authorization: Bearer` when set (the stack's `ADMIN_TOKEN`).
    token: Option<String>,
}

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// Asserts a 2xx and returns the body.
    pub fn expect_ok(self) -> Value {
        assert!(self.ok(), "expected 2xx, got {} {}", self.status, self.body);
        self.body
    }

    /// Asserts a 4xx with the `{error, detail}` body and returns the error code.
    pub fn expect_client_error(self) -> String {
        assert!(
            self.status.is_client_error(),
            "expected 4xx, got {} {}",
            self.status,
            self.body
        );
        assert!(
            self.body["detail"].is_string(),
            "4xx without detail: {}",
            self.body
        );
        self.body["error"]
            .as_str()
            .expect("4xx without an error code")
            .to_string()
    }
}

impl Api {
    pub fn new(stack: &Stack) -> Self {
        Self::at(stack.gateway_url())
    }

    pub fn at(base: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            .build()
            .expect("http client");
        Self {
            http,
            base,
            token: None,
        }
    }

    /// The same client, sending `token` as the admin bearer token.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    pub async fn try_post(&self, path: &str) -> reqwest::Result<Reply> {
        Self::reply(
            self.with_auth(self.http.post(format!("{}{path}", self.base)))
                .send()
                .await?,
        )
        .await
    }

    fn with_auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn post(&self, path: &str) -> Reply {
        self.try_post(path)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> Reply {
        let response = self.http.get(format!("{}{path}", self.base)).send().await;
        Self::reply(response.unwrap_or_else(|e| panic!("GET {path}: {e}")))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    async fn reply(response: reqwest::Response) -> reqwest::Result<Reply> {
        let status = response.status();
        let bytes = response.bytes().await?;
        Ok(Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }

    // Shorthands for the setup every test needs.

    /// POSTs a setup call, asking again while it answers 503 (which invites a retry: right
    /// after start-up, for instance, a price lookup may wait for a consumer group to form).
    async fn post_setup(&self, path: &str) -> Reply {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let reply = self.post(path).await;
            if reply.status != StatusCode::SERVICE_UNAVAILABLE
                || tokio::time::Instant::now() > deadline
            {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// POSTs a create call and returns the new id from the answer's `field`.
    async fn create(&self, path: &str, field: &str) -> String {
        let answer = self.post_setup(path).await.expect_ok();
        answer[field]
            .as_str()
            .unwrap_or_else(|| panic!("{path} answered no {field}: {answer}"))
            .to_string()
    }

    pub async fn new_item(&self, price: i64, stock: i64) -> String {
        let id = self
            .create(&format!("/stock/item/create/{price}"), "item_id")
            .await;
        if stock > 0 {
            self.post_setup(&format!("/stock/add/{id}/{stock}"))
                .await
                .expect_ok();
        }
        id
    }

    pub async fn new_user(&self, credit: i64) -> String {
        let id = self.create("/payment/create_user", "user_id").await;
        if credit > 0 {
            self.post_setup(&format!("/payment/add_funds/{id}/{credit}"))
                .await
                .expect_ok();
        }
        id
    }

    pub async fn new_order(&self, user: &str, items: &[(&str, i64)]) -> String {
        let id = self
            .create(&format!("/orders/create/{user}"), "order_id")
            .await;
        for (item, quantity) in items {
            self.post_setup(&format!("/orders/addItem/{id}/{item}/{quantity}"))
                .await
                .expect_ok();
        }
        id
    }

    /// A new item at `price` with `stock` units, a new user with `credit`, and an order of
    /// that user for `quantity` units of the item: `(item, user, order)`.
    pub async fn one_item_order(
        &self,
        price: i64,
        stock: i64,
        credit: i64,
        quantity: i64,
    ) -> (String, String, String) {
        let item = self.new_item(price, stock).await;
        let user = self.new_user(credit).await;
        let order = self.new_order(&user, &[(&item, quantity)]).await;
        (item, user, order)
    }

    /// `n` new users with `credit` each, every one with an order of one unit of `item`:
    /// `(order, user)` pairs.
    pub async fn one_unit_orders(
        &self,
        item: &str,
        n: usize,
        credit: i64,
    ) -> Vec<(String, String)> {
        let mut orders = Vec::with_capacity(n);
        for _ in 0..n {
            let user = self.new_user(credit).await;
            orders.push((self.new_order(&user, &[(item, 1)]).await, user));
        }
        orders
    }

    /// Checks `order` out once.
    pub async fn checkout(&self, order: &str) -> Reply {
        self.post(&format!("/orders/checkout/{order}")).await
    }

    /// Checks `order` out until the answer is definite (2xx or 4xx), as a client retries a
    /// 503 or a lost connection (checkout is idempotent); panics after two minutes.
    pub async fn checkout_until_definite(&self, order: &str) -> Reply {
        let path = format!("/orders/checkout/{order}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            match self.try_post(&path).await {
                Ok(reply) if !reply.status.is_server_error() => return reply,
                _ if tokio::time::Instant::now() > deadline => {
                    panic!("checkout of {order} never got a definite answer")
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// The stock of `item` and the credit of `user`.
    pub async fn holdings(&self, item: &str, user: &str) -> (i64, i64) {
        (self.stock_of(item).await, self.credit_of(user).await)
    }

    pub async fn stock_of(&self, item: &str) -> i64 {
        self.get(&format!("/stock/find/{item}")).await.expect_ok()["stock"]
            .as_i64()
            .expect("stock")
    }

    pub async fn credit_of(&self, user: &str) -> i64 {
        self.get(&format!("/payment/find_user/{user}"))
            .await
            .expect_ok()["credit"]
            .as_i64()
            .expect("credit")
    }

    pub async fn total_cost(&self, order: &str) -> i64 {
        self.get(&format!("/orders/find/{order}")).await.expect_ok()["total_cost"]
            .as_i64()
            .expect("total_cost")
    }

    pub async fn paid(&self, order: &str) -> bool {
        self.get(&format!("/orders/find/{order}")).await.expect_ok()["paid"]
            .as_bool()
            .expect("paid")
    }
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs each listed `async fn name(protocol: Protocol)` of the calling module as two tests,
/// `saga::name` and `two_pc::name`, so one test binary covers both protocols and their
/// stacks run side by side.
#[macro_export]
macro_rules! both_protocols {
    ($($name:ident),* $(,)?) => {
        mod saga {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::Protocol::Saga).await
            })*
        }
        mod two_pc {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::Protocol::TwoPc).await
            })*
        }
    };
}
