//! Topics follow `KAFKA_PARTITIONS` upwards: a shop started again with more replicas finds the
//! topics of its last run (a local stack keeps its data) and grows them, so the new order
//! replica's reply partition exists and its checkouts are answered.

use std::time::Duration;

use e2e::{Protocol, Service, Shop, Topics, eventually};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The partitions of the shop's three topics, as the broker's metadata says.
async fn partitions(topics: &Topics) -> Vec<usize> {
    let brokers = e2e::spawn::kafka_brokers().await;
    let names = topics.names();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("a metadata client");
        [names.stock, names.payment, names.replies]
            .iter()
            .map(|topic| {
                let metadata = client
                    .fetch_metadata(Some(topic), Duration::from_secs(5))
                    .expect("metadata");
                metadata
                    .topics()
                    .first()
                    .map_or(0, |t| t.partitions().len())
            })
            .collect()
    })
    .await
    .expect("the metadata lookup")
}

async fn partitions_become(topics: &Topics, wanted: usize) -> bool {
    eventually(Duration::from_secs(15), || async {
        partitions(topics).await == [wanted; 3]
    })
    .await
}

#[tokio::test]
async fn a_shop_started_again_with_more_replicas_grows_its_topics() {
    let topics = Topics::new(Protocol::Saga);
    let one = [("KAFKA_PARTITIONS", "1")];
    let shop = topics.spawn_shop(&one, &one).await;
    assert!(
        partitions_become(&topics, 1).await,
        "{:?}",
        partitions(&topics).await
    );
    shop.shutdown().await;

    // Started again as two replicas: this order service is the second, answered on
    // partition 1 of the replies, which the first run did not make. The participants come
    // back under new static identities (`bus::commands`), so their groups rebalance once the
    // old identities' sessions expire (6 s): the try may wait that long, within its deadline.
    let two = [("KAFKA_PARTITIONS", "2")];
    let second_replica = format!("{}order-2", topics.prefix());
    let order_2 = [
        ("KAFKA_PARTITIONS", "2"),
        ("REPLICA_ID", &second_replica),
        ("CHECKOUT_TIMEOUT_MS", "60000"),
    ];
    let shop = topics.spawn_shop(&order_2, &two).await;
    assert!(
        partitions_become(&topics, 2).await,
        "{:?}",
        partitions(&topics).await
    );
    let (orders, stock_api, payment_api) = (shop.order.api(), shop.stock.api(), shop.payment.api());
    let item = stock_api.new_item(5, 10).await;
    let user = payment_api.new_user(100).await;
    let bought = orders.new_order(&user, &[(&item, 2)]).await;
    orders.checkout_until_definite(&bought).await.expect_ok();
    assert_eq!(stock_api.stock_of(&item).await, 8);
    assert_eq!(payment_api.credit_of(&user).await, 90);

    // Fewer partitions asked for later leave them as they are: Kafka cannot remove any.
    let Shop {
        order,
        stock,
        payment,
    } = shop;
    payment.shutdown().await.expect("a clean stop");
    let payment = topics.spawn(Service::Payment, &one).await;
    assert_eq!(partitions(&topics).await, [2; 3]);
    Shop {
        order,
        stock,
        payment,
    }
    .shutdown()
    .await;
}
