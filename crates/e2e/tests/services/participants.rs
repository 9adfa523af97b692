//! The HTTP APIs of the two participants, each against one in-process service. Stock and
//! payment keep accounts the same way (create, find, add, take, `batch_init`); a
//! [`Participant`] names what differs, and every test of the shared contract runs for both.

use std::collections::BTreeMap;

use e2e::{Api, App, Protocol, Service, spawn_app};
use redis::AsyncCommands;

/// How one participant spells the shared account API.
struct Participant {
    service: Service,
    /// Creates an account holding nothing.
    create: &'static str,
    /// The field of the created account's id.
    id_field: &'static str,
    /// `{find}/{id}` shows the account.
    find: &'static str,
    /// The field of the account's balance.
    balance: &'static str,
    /// `{add}/{id}/{amount}` and `{take}/{id}/{amount}`.
    add: &'static str,
    take: &'static str,
    /// The refusal of a take larger than the balance, and of an unknown id.
    short: &'static str,
    unknown: &'static str,
    /// The `batch_init` path of `n` accounts holding `amount` each.
    batch_init: fn(&str, &str) -> String,
}

const STOCK: Participant = Participant {
    service: Service::Stock,
    create: "/stock/item/create/7",
    id_field: "item_id",
    find: "/stock/find",
    balance: "stock",
    add: "/stock/add",
    take: "/stock/subtract",
    short: "out_of_stock",
    unknown: "item_not_found",
    batch_init: |n, amount| format!("/stock/batch_init/{n}/{amount}/1"),
};

const PAYMENT: Participant = Participant {
    service: Service::Payment,
    create: "/payment/create_user",
    id_field: "user_id",
    find: "/payment/find_user",
    balance: "credit",
    add: "/payment/add_funds",
    take: "/payment/pay",
    short: "insufficient_credit",
    unknown: "user_not_found",
    batch_init: |n, amount| format!("/payment/batch_init/{n}/{amount}"),
};

impl Participant {
    /// A new account holding `amount`.
    async fn open(&self, api: &Api, amount: i64) -> String {
        let created = api.post(self.create).await.expect_ok();
        let id = created[self.id_field]
            .as_str()
            .unwrap_or_else(|| panic!("{} answered no {}: {created}", self.create, self.id_field))
            .to_string();
        if amount > 0 {
            api.post(&self.add(&id, amount)).await.expect_ok();
        }
        id
    }

    fn add(&self, id: &str, amount: impl std::fmt::Display) -> String {
        format!("{}/{id}/{amount}", self.add)
    }

    fn take(&self, id: &str, amount: impl std::fmt::Display) -> String {
        format!("{}/{id}/{amount}", self.take)
    }

    async fn balance(&self, api: &Api, id: &str) -> i64 {
        let found = api.get(&format!("{}/{id}", self.find)).await.expect_ok();
        found[self.balance]
            .as_i64()
            .unwrap_or_else(|| panic!("{} of {id}: {found}", self.balance))
    }
}

/// Every key of the app's Redis with its serialized value: equal snapshots mean nothing
/// changed.
async fn contents(app: &App) -> BTreeMap<String, Vec<u8>> {
    let mut conn = app.redis.clone();
    let keys: Vec<String> = conn.keys("*").await.expect("keys");
    let mut all = BTreeMap::new();
    for key in keys {
        let value: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("dump");
        all.insert(key, value);
    }
    all
}

async fn accounts_follow_the_contract(p: &Participant) {
    let app = spawn_app(p.service).await;
    let api = app.api();
    let id = p.open(&api, 0).await;
    assert_eq!(p.balance(&api, &id).await, 0);
    api.post(&p.add(&id, 10)).await.expect_ok();
    api.post(&p.take(&id, 4)).await.expect_ok();
    assert_eq!(p.balance(&api, &id).await, 6);
    assert_eq!(
        api.post(&p.take(&id, 7)).await.expect_client_error(),
        p.short
    );
    assert_eq!(p.balance(&api, &id).await, 6);
    for unknown in [
        api.get(&format!("{}/no-such-id", p.find)).await,
        api.post(&p.add("no-such-id", 1)).await,
        api.post(&p.take("no-such-id", 1)).await,
    ] {
        assert_eq!(unknown.expect_client_error(), p.unknown);
    }
    app.shutdown().await.expect("a clean stop");
}

async fn bad_amounts_are_refused_with_a_json_error_and_change_nothing(p: &Participant) {
    let app = spawn_app(p.service).await;
    let api = app.api();
    let id = p.open(&api, 5).await;
    let before = contents(&app).await;
    let too_big = "9223372036854775808";
    for bad in ["-1", "1.5", "abc", too_big, "1e3", "%20"] {
        for path in [
            p.add(&id, bad),
            p.take(&id, bad),
            (p.batch_init)(bad, "1"),
            (p.batch_init)("1", bad),
        ] {
            let refused = api.post(&path).await.expect_client_error();
            assert_eq!(refused, "bad_input", "{path}");
        }
    }
    assert_eq!(api.post(p.add).await.expect_client_error(), "no_such_route");
    assert_eq!(contents(&app).await, before, "a refused call changed Redis");
    assert_eq!(p.balance(&api, &id).await, 5);
}

async fn amounts_are_exact_at_the_64_bit_limits(p: &Participant) {
    let app = spawn_app(p.service).await;
    let api = app.api();
    let id = p.open(&api, 0).await;
    api.post(&p.add(&id, i64::MAX)).await.expect_ok();
    assert_eq!(
        api.post(&p.add(&id, 1)).await.expect_client_error(),
        "bad_input",
        "an overflow"
    );
    assert_eq!(p.balance(&api, &id).await, i64::MAX);
    api.post(&p.take(&id, i64::MAX - 1)).await.expect_ok();
    assert_eq!(p.balance(&api, &id).await, 1);
    assert_eq!(
        api.post(&p.take(&id, 2)).await.expect_client_error(),
        p.short
    );
    assert_eq!(p.balance(&api, &id).await, 1);
}

async fn concurrent_takes_lose_nothing_and_never_go_negative(p: &Participant) {
    let app = spawn_app(p.service).await;
    let api = app.api();
    let id = p.open(&api, 100).await;
    let replies = futures::future::join_all((0..200).map(|_| {
        let (api, path) = (api.clone(), p.take(&id, 1));
        async move { api.post(&path).await }
    }))
    .await;
    let (taken, refused): (Vec<_>, Vec<_>) = replies.into_iter().partition(|r| r.ok());
    assert_eq!((taken.len(), refused.len()), (100, 100));
    for reply in refused {
        assert_eq!(reply.status.as_u16(), 409, "{}", reply.body);
        assert_eq!(reply.expect_client_error(), p.short);
    }
    assert_eq!(p.balance(&api, &id).await, 0);
}

async fn batch_init_needs_the_admin_token_and_makes_ids_0_to_n(p: &Participant) {
    let topics = e2e::spawn::Topics::new(Protocol::Saga);
    let app = topics.spawn(p.service, &[("ADMIN_TOKEN", "t0ken")]).await;
    let path = (p.batch_init)("100", "20");
    let open = app.api();
    let before = contents(&app).await;
    let refused = open.post(&path).await;
    assert_eq!(refused.status.as_u16(), 401, "{}", refused.body);
    assert_eq!(contents(&app).await, before, "a refused batch_init wrote");
    let admin = open.with_token("t0ken");
    assert!(admin.post(&path).await.expect_ok()["msg"].is_string());
    assert_eq!(p.balance(&admin, "0").await, 20);
    assert_eq!(p.balance(&admin, "99").await, 20);
    let beyond = admin.get(&format!("{}/100", p.find)).await;
    assert_eq!(beyond.expect_client_error(), p.unknown);
}

/// Runs each listed `async fn name(p: &Participant)` as two tests, `stock::name` and
/// `payment::name`.
macro_rules! for_both_participants {
    ($($name:ident),* $(,)?) => {
        mod stock {
            $(#[tokio::test]
            async fn $name() {
                super::$name(&super::STOCK).await
            })*
        }
        mod payment {
            $(#[tokio::test]
            async fn $name() {
                super::$name(&super::PAYMENT).await
            })*
        }
    };
}

for_both_participants!(
    accounts_follow_the_contract,
    bad_amounts_are_refused_with_a_json_error_and_change_nothing,
    amounts_are_exact_at_the_64_bit_limits,
    concurrent_takes_lose_nothing_and_never_go_negative,
    batch_init_needs_the_admin_token_and_makes_ids_0_to_n,
);

#[tokio::test]
async fn stock_shows_the_price_and_answers_the_stock_after_a_change() {
    let app = spawn_app(Service::Stock).await;
    let api = app.api();
    let item = STOCK.open(&api, 0).await;
    let found = api.get(&format!("/stock/find/{item}")).await.expect_ok();
    assert_eq!(
        (found["stock"].as_i64(), found["price"].as_i64()),
        (Some(0), Some(7))
    );
    let added = api.post(&STOCK.add(&item, 3)).await.expect_ok();
    assert_eq!(
        (added["item_id"].as_str(), added["stock"].as_i64()),
        (Some(item.as_str()), Some(3))
    );
    for bad in ["-1", "x", "9223372036854775808"] {
        let refused = api.post(&format!("/stock/item/create/{bad}")).await;
        assert_eq!(refused.expect_client_error(), "bad_input", "price {bad}");
    }
}

#[tokio::test]
async fn payment_shows_the_user_and_answers_done_or_the_credit() {
    let app = spawn_app(Service::Payment).await;
    let api = app.api();
    let user = PAYMENT.open(&api, 0).await;
    let found = api
        .get(&format!("/payment/find_user/{user}"))
        .await
        .expect_ok();
    assert_eq!(
        (found["user_id"].as_str(), found["credit"].as_i64()),
        (Some(user.as_str()), Some(0))
    );
    let added = api.post(&PAYMENT.add(&user, 50)).await.expect_ok();
    assert_eq!(added["done"], true);
    let paid = api.post(&PAYMENT.take(&user, 20)).await.expect_ok();
    assert_eq!(
        (paid["user_id"].as_str(), paid["credit"].as_i64()),
        (Some(user.as_str()), Some(30))
    );
}
