//! Checkout behaviour both protocols share; included by `checkout_saga.rs` and
//! `checkout_2pc.rs`, which set `PROTOCOL`.

use std::collections::HashMap;

use e2e::{Api, shared_stack};
use rand::Rng;

use super::PROTOCOL;

async fn api() -> Api {
    Api::new(shared_stack(PROTOCOL).await)
}

/// The course benchmark's consistency procedure: 1 item with stock 100 and price 1, 1000
/// users with credit 1, 1000 orders of that item for random users, all checked out at once.
#[tokio::test]
async fn the_consistency_procedure_sells_exactly_the_stock() {
    let api = api().await;
    let item = api.new_item(1, 100).await;
    let users: Vec<String> = futures::future::join_all((0..1000).map(|_| {
        let api = api.clone();
        async move { api.new_user(1).await }
    }))
    .await;
    let owners: Vec<String> = {
        let mut rng = rand::rng();
        (0..1000)
            .map(|_| users[rng.random_range(0..users.len())].clone())
            .collect()
    };
    let orders: Vec<String> = futures::future::join_all(owners.iter().map(|user| {
        let (api, item) = (api.clone(), item.clone());
        async move { api.new_order(user, &[(&item, 1)]).await }
    }))
    .await;
    let answers = futures::future::join_all(orders.iter().map(|order| {
        let api = api.clone();
        async move { api.post(&format!("/orders/checkout/{order}")).await }
    }))
    .await;
    let server_errors = answers
        .iter()
        .filter(|r| r.status.is_server_error())
        .count();
    let accepted = answers.iter().filter(|r| r.ok()).count();
    assert_eq!(server_errors, 0, "no 5xx expected");
    let mut refusals: HashMap<String, usize> = HashMap::new();
    for answer in answers.iter().filter(|r| !r.ok()) {
        *refusals
            .entry(answer.body["error"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    println!("consistency procedure: {accepted} of 1000 checkouts paid; refusals {refusals:?}");
    // Exactly the stock sells: no checkout is refused for units that an aborting one gives back.
    assert_eq!(accepted, 100, "exactly the stock is sold");
    assert_eq!(api.stock_of(&item).await, 100 - accepted as i64);
    let credit: i64 = futures::future::join_all(users.iter().map(|u| {
        let api = api.clone();
        async move { api.credit_of(u).await }
    }))
    .await
    .into_iter()
    .sum();
    assert_eq!(credit, 1000 - accepted as i64);
    // Nobody was lied to: a 2xx order is paid, a 4xx order is not.
    for (order, answer) in orders.iter().zip(&answers) {
        assert_eq!(
            api.paid(order).await,
            answer.ok(),
            "order {order} answered {}",
            answer.status
        );
    }
}

#[tokio::test]
async fn one_missing_item_takes_nothing_anywhere() {
    let api = api().await;
    let user = api.new_user(1000).await;
    let (plenty, scarce) = (api.new_item(10, 50).await, api.new_item(10, 1).await);
    let order = api.new_order(&user, &[(&plenty, 3), (&scarce, 2)]).await;
    let code = api
        .post(&format!("/orders/checkout/{order}"))
        .await
        .expect_client_error();
    assert_eq!(code, "out_of_stock");
    assert_eq!(
        (api.stock_of(&plenty).await, api.stock_of(&scarce).await),
        (50, 1)
    );
    assert_eq!(api.credit_of(&user).await, 1000);
    assert!(!api.paid(&order).await);
}

#[tokio::test]
async fn too_little_credit_takes_nothing_and_a_later_retry_succeeds() {
    let api = api().await;
    let user = api.new_user(5).await;
    let item = api.new_item(3, 10).await;
    let order = api.new_order(&user, &[(&item, 2)]).await;
    let code = api
        .post(&format!("/orders/checkout/{order}"))
        .await
        .expect_client_error();
    assert_eq!(code, "insufficient_credit");
    assert_eq!(
        (api.stock_of(&item).await, api.credit_of(&user).await),
        (10, 5)
    );
    assert!(!api.paid(&order).await);
    api.post(&format!("/payment/add_funds/{user}/1"))
        .await
        .expect_ok();
    api.post(&format!("/orders/checkout/{order}"))
        .await
        .expect_ok();
    assert_eq!(
        (api.stock_of(&item).await, api.credit_of(&user).await),
        (8, 0)
    );
    assert!(api.paid(&order).await);
}

#[tokio::test]
async fn concurrent_checkouts_of_one_order_charge_once() {
    let api = api().await;
    let user = api.new_user(100).await;
    let item = api.new_item(7, 10).await;
    let order = api.new_order(&user, &[(&item, 1)]).await;
    let answers = futures::future::join_all((0..20).map(|_| {
        let api = api.clone();
        let path = format!("/orders/checkout/{order}");
        async move { api.post(&path).await }
    }))
    .await;
    assert!(
        answers.iter().all(|r| r.ok()),
        "every checkout of a paid order answers 2xx: {answers:?}"
    );
    assert_eq!(
        (api.stock_of(&item).await, api.credit_of(&user).await),
        (9, 93)
    );
}

#[tokio::test]
async fn racing_orders_for_the_last_units_never_oversell() {
    let api = api().await;
    let item = api.new_item(2, 5).await;
    let mut users = HashMap::new();
    for i in 0..30 {
        let user = api.new_user(2).await;
        users.insert(api.new_order(&user, &[(&item, 1)]).await, (i, user));
    }
    let answers = futures::future::join_all(users.keys().map(|order| {
        let api = api.clone();
        let path = format!("/orders/checkout/{order}");
        async move { api.post(&path).await }
    }))
    .await;
    assert_eq!(answers.iter().filter(|r| r.ok()).count(), 5);
    assert_eq!(api.stock_of(&item).await, 0);
    let mut charged = 0;
    for (_, user) in users.values() {
        charged += 2 - api.credit_of(user).await;
    }
    assert_eq!(charged, 10);
}
