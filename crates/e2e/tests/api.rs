//! The public HTTP API through the gateway, against the real stack: every endpoint, each
//! kind of bad input, and concurrent updates.

use e2e::{Api, Protocol, shared_stack};

async fn api() -> Api {
    Api::new(shared_stack(Protocol::Saga).await)
}

#[tokio::test]
async fn stock_endpoints_follow_the_contract() {
    let api = api().await;
    let item = api.new_item(7, 0).await;
    let found = api.get(&format!("/stock/find/{item}")).await.expect_ok();
    assert_eq!(
        (found["stock"].as_i64(), found["price"].as_i64()),
        (Some(0), Some(7))
    );
    api.post(&format!("/stock/add/{item}/10")).await.expect_ok();
    api.post(&format!("/stock/subtract/{item}/4"))
        .await
        .expect_ok();
    assert_eq!(api.stock_of(&item).await, 6);
    assert_eq!(
        api.post(&format!("/stock/subtract/{item}/7"))
            .await
            .expect_client_error(),
        "out_of_stock"
    );
    assert_eq!(api.stock_of(&item).await, 6);
    assert_eq!(
        api.get("/stock/find/no-such-item")
            .await
            .expect_client_error(),
        "item_not_found"
    );
    assert_eq!(
        api.post("/stock/add/no-such-item/1")
            .await
            .expect_client_error(),
        "item_not_found"
    );
}

#[tokio::test]
async fn payment_endpoints_follow_the_contract() {
    let api = api().await;
    let user = api.post("/payment/create_user").await.expect_ok()["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let found = api
        .get(&format!("/payment/find_user/{user}"))
        .await
        .expect_ok();
    assert_eq!(
        (found["user_id"].as_str(), found["credit"].as_i64()),
        (Some(user.as_str()), Some(0))
    );
    let added = api
        .post(&format!("/payment/add_funds/{user}/50"))
        .await
        .expect_ok();
    assert_eq!(added["done"], true);
    api.post(&format!("/payment/pay/{user}/20"))
        .await
        .expect_ok();
    assert_eq!(api.credit_of(&user).await, 30);
    assert_eq!(
        api.post(&format!("/payment/pay/{user}/31"))
            .await
            .expect_client_error(),
        "insufficient_credit"
    );
    assert_eq!(api.credit_of(&user).await, 30);
    assert_eq!(
        api.get("/payment/find_user/nobody")
            .await
            .expect_client_error(),
        "user_not_found"
    );
    assert_eq!(
        api.post("/payment/pay/nobody/1")
            .await
            .expect_client_error(),
        "user_not_found"
    );
}

#[tokio::test]
async fn order_endpoints_follow_the_contract() {
    let api = api().await;
    let user = api.new_user(0).await;
    let (a, b) = (api.new_item(3, 10).await, api.new_item(5, 10).await);
    let order = api.new_order(&user, &[]).await;
    // The first addItem asks the stock service for the price over Kafka.
    api.post(&format!("/orders/addItem/{order}/{a}/2"))
        .await
        .expect_ok();
    api.post(&format!("/orders/addItem/{order}/{b}/1"))
        .await
        .expect_ok();
    api.post(&format!("/orders/addItem/{order}/{a}/1"))
        .await
        .expect_ok();
    let found = api.get(&format!("/orders/find/{order}")).await.expect_ok();
    assert_eq!(found["order_id"].as_str(), Some(order.as_str()));
    assert_eq!(found["user_id"].as_str(), Some(user.as_str()));
    assert_eq!(found["paid"], false);
    assert_eq!(found["total_cost"].as_i64(), Some(3 * 3 + 5));
    let mut items: Vec<(String, i64)> = serde_json::from_value(found["items"].clone()).unwrap();
    items.sort();
    let mut expected = vec![(a.clone(), 3), (b.clone(), 1)];
    expected.sort();
    assert_eq!(items, expected);

    assert_eq!(
        api.get("/orders/find/no-such-order")
            .await
            .expect_client_error(),
        "order_not_found"
    );
    assert_eq!(
        api.post(&format!("/orders/addItem/no-such-order/{a}/1"))
            .await
            .expect_client_error(),
        "order_not_found"
    );
    assert_eq!(
        api.post(&format!("/orders/addItem/{order}/no-such-item/1"))
            .await
            .expect_client_error(),
        "item_not_found"
    );
    assert_eq!(
        api.post("/orders/checkout/no-such-order")
            .await
            .expect_client_error(),
        "order_not_found"
    );
    // None of the refused calls changed the order.
    assert_eq!(
        api.get(&format!("/orders/find/{order}")).await.expect_ok()["total_cost"].as_i64(),
        Some(14)
    );
}

#[tokio::test]
async fn a_paid_order_takes_no_more_items_and_checks_out_once() {
    let api = api().await;
    let user = api.new_user(100).await;
    let item = api.new_item(10, 5).await;
    let order = api.new_order(&user, &[(&item, 2)]).await;
    api.checkout(&order).await.expect_ok();
    api.checkout(&order).await.expect_ok();
    assert!(api.paid(&order).await);
    assert_eq!(api.holdings(&item, &user).await, (3, 80));
    assert_eq!(
        api.post(&format!("/orders/addItem/{order}/{item}/1"))
            .await
            .expect_client_error(),
        "already_paid"
    );
}

#[tokio::test]
async fn bad_numbers_are_refused_with_a_json_error_and_change_nothing() {
    let api = api().await;
    let item = api.new_item(1, 5).await;
    let user = api.new_user(5).await;
    let order = api.new_order(&user, &[]).await;
    let too_big = "9223372036854775808";
    for bad in ["-1", "1.5", "abc", too_big, "1e3", "%20"] {
        for path in [
            format!("/stock/add/{item}/{bad}"),
            format!("/stock/subtract/{item}/{bad}"),
            format!("/payment/add_funds/{user}/{bad}"),
            format!("/payment/pay/{user}/{bad}"),
            format!("/orders/addItem/{order}/{item}/{bad}"),
            format!("/stock/item/create/{bad}"),
            format!("/stock/batch_init/{bad}/1/1"),
            format!("/payment/batch_init/1/{bad}"),
            format!("/orders/batch_init/{bad}/1/1/1"),
        ] {
            assert_eq!(
                api.post(&path).await.expect_client_error(),
                "bad_input",
                "{path}"
            );
        }
    }
    assert_eq!(
        api.post(&format!("/orders/addItem/{order}/{item}/0"))
            .await
            .expect_client_error(),
        "bad_input"
    );
    assert_eq!(
        api.post("/orders/batch_init/5/0/1/1")
            .await
            .expect_client_error(),
        "bad_input"
    );
    assert_eq!(
        api.post("/stock/add").await.expect_client_error(),
        "no_such_route"
    );
    assert_eq!(api.holdings(&item, &user).await, (5, 5));
    assert_eq!(
        api.get(&format!("/orders/find/{order}")).await.expect_ok()["total_cost"].as_i64(),
        Some(0)
    );
}

#[tokio::test]
async fn overflow_is_refused_and_changes_nothing() {
    let api = api().await;
    let item = api.new_item(1, 0).await;
    let max = i64::MAX;
    api.post(&format!("/stock/add/{item}/{max}"))
        .await
        .expect_ok();
    assert_eq!(
        api.post(&format!("/stock/add/{item}/1"))
            .await
            .expect_client_error(),
        "bad_input"
    );
    assert_eq!(api.stock_of(&item).await, max);
    let user = api.new_user(max).await;
    assert_eq!(
        api.post(&format!("/payment/add_funds/{user}/1"))
            .await
            .expect_client_error(),
        "bad_input"
    );
    assert_eq!(api.credit_of(&user).await, max);
    let pricey = api.new_item(max, 0).await;
    let order = api.new_order(&user, &[(&pricey, 1)]).await;
    assert_eq!(
        api.post(&format!("/orders/addItem/{order}/{pricey}/1"))
            .await
            .expect_client_error(),
        "bad_input"
    );
    assert_eq!(
        api.get(&format!("/orders/find/{order}")).await.expect_ok()["total_cost"].as_i64(),
        Some(max)
    );
}

#[tokio::test]
async fn concurrent_subtracts_and_payments_lose_nothing() {
    let api = api().await;
    let item = api.new_item(1, 100).await;
    let user = api.new_user(100).await;
    let calls = (0..200).flat_map(|_| {
        [
            format!("/stock/subtract/{item}/1"),
            format!("/payment/pay/{user}/1"),
        ]
    });
    let replies = futures::future::join_all(calls.map(|path| {
        let api = api.clone();
        async move { (path.starts_with("/stock"), api.post(&path).await) }
    }))
    .await;
    let ok = |stock: bool| {
        replies
            .iter()
            .filter(|(s, r)| *s == stock && r.ok())
            .count()
    };
    assert_eq!((ok(true), ok(false)), (100, 100));
    assert!(
        replies
            .iter()
            .all(|(_, r)| r.ok() || r.status.as_u16() == 409),
        "only 2xx or 409 expected"
    );
    assert_eq!(api.holdings(&item, &user).await, (0, 0));
}

#[tokio::test]
async fn batch_init_makes_the_course_data() {
    let api = api().await;
    api.post("/stock/batch_init/100/20/3").await.expect_ok();
    api.post("/payment/batch_init/100/50").await.expect_ok();
    let msg = api
        .post("/orders/batch_init/100/100/100/3")
        .await
        .expect_ok();
    assert!(msg["msg"].is_string());
    let order = api.get("/orders/find/99").await.expect_ok();
    assert_eq!(order["total_cost"].as_i64(), Some(6));
    let quantities: i64 = order["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[1].as_i64().unwrap())
        .sum();
    assert_eq!(quantities, 2);
    assert_eq!(
        api.get("/stock/find/99").await.expect_ok()["stock"].as_i64(),
        Some(20)
    );
    assert_eq!(api.credit_of("99").await, 50);
}
