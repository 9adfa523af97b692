//! Checkout through the gateway under both protocols (each test runs once per protocol,
//! against that protocol's shared stack): the consistency procedure, all-or-nothing,
//! idempotence, races for the last units, and exact money at the 64-bit edges.

use std::collections::HashMap;

use e2e::{Api, Protocol, shared_stack};
use rand::Rng;

async fn api(protocol: Protocol) -> Api {
    Api::new(shared_stack(protocol).await)
}

/// The course benchmark's consistency procedure: 1 item with stock 100 and price 1, 1000
/// users with credit 1, 1000 orders of that item for random users, all checked out at once.
async fn the_consistency_procedure_sells_exactly_the_stock(protocol: Protocol) {
    let api = api(protocol).await;
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
        async move { api.checkout(order).await }
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

async fn one_missing_item_takes_nothing_anywhere(protocol: Protocol) {
    let api = api(protocol).await;
    let user = api.new_user(1000).await;
    let (plenty, scarce) = (api.new_item(10, 50).await, api.new_item(10, 1).await);
    let order = api.new_order(&user, &[(&plenty, 3), (&scarce, 2)]).await;
    let code = api.checkout(&order).await.expect_client_error();
    assert_eq!(code, "out_of_stock");
    assert_eq!(
        (api.stock_of(&plenty).await, api.stock_of(&scarce).await),
        (50, 1)
    );
    assert_eq!(api.credit_of(&user).await, 1000);
    assert!(!api.paid(&order).await);
}

async fn too_little_credit_takes_nothing_and_a_later_retry_succeeds(protocol: Protocol) {
    let api = api(protocol).await;
    let user = api.new_user(5).await;
    let item = api.new_item(3, 10).await;
    let order = api.new_order(&user, &[(&item, 2)]).await;
    let code = api.checkout(&order).await.expect_client_error();
    assert_eq!(code, "insufficient_credit");
    assert_eq!(api.holdings(&item, &user).await, (10, 5));
    assert!(!api.paid(&order).await);
    api.post(&format!("/payment/add_funds/{user}/1"))
        .await
        .expect_ok();
    api.checkout(&order).await.expect_ok();
    assert_eq!(api.holdings(&item, &user).await, (8, 0));
    assert!(api.paid(&order).await);
}

async fn concurrent_checkouts_of_one_order_charge_once(protocol: Protocol) {
    let api = api(protocol).await;
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
    assert_eq!(api.holdings(&item, &user).await, (9, 93));
}

async fn racing_orders_for_the_last_units_never_oversell(protocol: Protocol) {
    let api = api(protocol).await;
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

/// Around 2^53 (where doubles stop being exact) and near i64::MAX: an order costing one more
/// than the user's credit is refused and changes nothing; costing exactly the credit, it is
/// paid and leaves nothing.
async fn credit_is_exact_at_every_edge(protocol: Protocol) {
    let api = api(protocol).await;
    for credit in [(1i64 << 53) + 3, i64::MAX - 1] {
        let item = api.new_item(credit + 1, 2).await;
        let poor = api.new_user(credit).await;
        let order = api.new_order(&poor, &[(&item, 1)]).await;
        let code = api.checkout(&order).await.expect_client_error();
        assert_eq!(code, "insufficient_credit", "credit {credit}");
        assert_eq!(
            (
                api.credit_of(&poor).await,
                api.stock_of(&item).await,
                api.paid(&order).await
            ),
            (credit, 2, false)
        );
        let exact = api.new_user(credit + 1).await;
        let order = api.new_order(&exact, &[(&item, 1)]).await;
        api.checkout(&order).await.expect_ok();
        assert_eq!(
            (api.credit_of(&exact).await, api.stock_of(&item).await),
            (0, 1)
        );
    }
}

/// The same for stock: one unit more than there is is refused and takes nothing.
async fn stock_is_exact_at_every_edge(protocol: Protocol) {
    let api = api(protocol).await;
    for stock in [(1i64 << 53) + 3, i64::MAX - 1] {
        let item = api.new_item(1, stock).await;
        let user = api.new_user(i64::MAX).await;
        let order = api.new_order(&user, &[(&item, stock + 1)]).await;
        let code = api.checkout(&order).await.expect_client_error();
        assert_eq!(code, "out_of_stock", "stock {stock}");
        assert_eq!(api.holdings(&item, &user).await, (stock, i64::MAX));
        let order = api.new_order(&user, &[(&item, stock)]).await;
        api.checkout(&order).await.expect_ok();
        assert_eq!(api.holdings(&item, &user).await, (0, i64::MAX - stock));
    }
}

/// An order of i64::MAX units costing i64::MAX, refused for one unit of credit: the stock
/// taken (or reserved) for it all comes back; with that unit added it is paid in full.
async fn a_line_at_i64_max_is_all_or_nothing(protocol: Protocol) {
    let api = api(protocol).await;
    let item = api.new_item(1, i64::MAX).await;
    let user = api.new_user(i64::MAX - 1).await;
    let order = api.new_order(&user, &[(&item, i64::MAX)]).await;
    let code = api.checkout(&order).await.expect_client_error();
    assert_eq!(code, "insufficient_credit");
    assert_eq!(api.holdings(&item, &user).await, (i64::MAX, i64::MAX - 1));
    // The stock is back at the maximum: one more unit does not fit.
    let over = api
        .post(&format!("/stock/add/{item}/1"))
        .await
        .expect_client_error();
    assert_eq!(over, "bad_input");
    api.post(&format!("/payment/add_funds/{user}/1"))
        .await
        .expect_ok();
    api.checkout(&order).await.expect_ok();
    assert_eq!(api.holdings(&item, &user).await, (0, 0));
}

e2e::both_protocols!(
    the_consistency_procedure_sells_exactly_the_stock,
    one_missing_item_takes_nothing_anywhere,
    too_little_credit_takes_nothing_and_a_later_retry_succeeds,
    concurrent_checkouts_of_one_order_charge_once,
    racing_orders_for_the_last_units_never_oversell,
    credit_is_exact_at_every_edge,
    stock_is_exact_at_every_edge,
    a_line_at_i64_max_is_all_or_nothing,
);
