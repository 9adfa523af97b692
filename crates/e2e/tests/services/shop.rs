//! Checkout through an order service in this process, with stock and payment spawned beside
//! it on the same topics: the whole saga or 2PC over the real broker, without a stack.

use e2e::{Api, Protocol, spawn_shop};

/// The stock of `item` and the credit of `user`, each from its own service.
async fn holdings(stock: &Api, payment: &Api, item: &str, user: &str) -> (i64, i64) {
    (stock.stock_of(item).await, payment.credit_of(user).await)
}

async fn a_checkout_takes_stock_and_credit_once_and_a_refused_one_takes_nothing(
    protocol: Protocol,
) {
    let shop = spawn_shop(protocol).await;
    let (orders, stock, payment) = (shop.order.api(), shop.stock.api(), shop.payment.api());
    let item = stock.new_item(5, 10).await;
    let user = payment.new_user(100).await;
    // The order service learns the price from stock over Kafka.
    let order = orders.new_order(&user, &[(&item, 2)]).await;
    assert_eq!(orders.total_cost(&order).await, 10);

    orders.checkout_until_definite(&order).await.expect_ok();
    assert!(orders.paid(&order).await);
    assert_eq!(holdings(&stock, &payment, &item, &user).await, (8, 90));
    // A paid order checks out again with a 2xx and nothing taken twice.
    orders.checkout(&order).await.expect_ok();
    assert_eq!(holdings(&stock, &payment, &item, &user).await, (8, 90));

    let greedy = orders.new_order(&user, &[(&item, 9)]).await;
    let refused = orders.checkout_until_definite(&greedy).await;
    assert_eq!(refused.expect_client_error(), "out_of_stock");
    assert!(!orders.paid(&greedy).await);
    assert_eq!(holdings(&stock, &payment, &item, &user).await, (8, 90));

    shop.shutdown().await;
}

e2e::both_protocols!(a_checkout_takes_stock_and_credit_once_and_a_refused_one_takes_nothing);
