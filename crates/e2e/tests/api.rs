//! The public HTTP API through the gateway, against the real stack: the order endpoints,
//! bad input across the services, and `batch_init` of the course data. Stock's and
//! payment's own endpoints are tested against one in-process service each
//! (`tests/services`).

use e2e::{Api, Protocol, shared_stack};

async fn api() -> Api {
    Api::new(shared_stack(Protocol::Saga).await)
}

#[tokio::test]
async fn order_endpoints_follow_the_contract() {
    let api = api().await;
    let user = api.new_user(0).await;
    let (a, b) = (api.new_item(3, 10).await, api.new_item(5, 10).await);
    let order = api.new_order(&user, &[]).await;
    // The first addItem asks the stock service for the price over Kafka.
    for (item, quantity) in [(&a, 2), (&b, 1), (&a, 1)] {
        api.post(&format!("/orders/addItem/{order}/{item}/{quantity}"))
            .await
            .expect_ok();
    }
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

    let refusals = [
        (
            api.get("/orders/find/no-such-order").await,
            "order_not_found",
        ),
        (
            api.post(&format!("/orders/addItem/no-such-order/{a}/1"))
                .await,
            "order_not_found",
        ),
        (
            api.post(&format!("/orders/addItem/{order}/no-such-item/1"))
                .await,
            "item_not_found",
        ),
        (
            api.post("/orders/checkout/no-such-order").await,
            "order_not_found",
        ),
    ];
    for (reply, code) in refusals {
        assert_eq!(reply.expect_client_error(), code);
    }
    // None of the refused calls changed the order.
    assert_eq!(api.total_cost(&order).await, 14);
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
            format!("/orders/addItem/{order}/{item}/{bad}"),
            format!("/orders/batch_init/{bad}/1/1/1"),
            format!("/orders/batch_init/1/{bad}/1/1"),
            format!("/orders/batch_init/1/1/{bad}/1"),
            format!("/orders/batch_init/1/1/1/{bad}"),
        ] {
            assert_eq!(
                api.post(&path).await.expect_client_error(),
                "bad_input",
                "{path}"
            );
        }
    }
    for (path, code) in [
        (format!("/orders/addItem/{order}/{item}/0"), "bad_input"),
        ("/orders/batch_init/5/0/1/1".to_string(), "bad_input"),
        ("/stock/add".to_string(), "no_such_route"),
    ] {
        assert_eq!(api.post(&path).await.expect_client_error(), code, "{path}");
    }
    assert_eq!(api.holdings(&item, &user).await, (5, 5));
    assert_eq!(api.total_cost(&order).await, 0);
}

#[tokio::test]
async fn an_order_total_past_64_bits_is_refused_and_changes_nothing() {
    let api = api().await;
    let max = i64::MAX;
    let user = api.new_user(0).await;
    let pricey = api.new_item(max, 0).await;
    let order = api.new_order(&user, &[(&pricey, 1)]).await;
    assert_eq!(
        api.post(&format!("/orders/addItem/{order}/{pricey}/1"))
            .await
            .expect_client_error(),
        "bad_input"
    );
    assert_eq!(api.total_cost(&order).await, max);
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
