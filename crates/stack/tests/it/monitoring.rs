//! `MONITORING=1`: a Prometheus beside the stack, supervised like any component, scraping
//! every service replica's `/metrics`. Only its targets are checked, not that they are up:
//! whether a service serves metrics is the service's business.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use stack::Stack;
use stack::component::{self, Kind};

use super::{client, config};

#[tokio::test]
async fn prometheus_scrapes_one_target_per_replica() {
    let cfg = config("stack-it-monitoring")
        .with_services()
        .with_replicas(2)
        .with_monitoring();
    let stack = Stack::start(cfg).await.expect("monitored stack starts");
    assert_eq!(
        stack.components().last().map(String::as_str),
        Some("prometheus")
    );
    let prometheus = format!("http://127.0.0.1:{}", stack.ports().prometheus);
    assert_eq!(client::http_get(&prometheus, "/-/healthy").await.0, 200);

    let replicas: BTreeSet<(String, String)> = component::all(stack.config(), &stack.ports())
        .into_iter()
        .filter_map(|c| match c.kind {
            Kind::Service(s) => Some((format!("127.0.0.1:{}", c.port), s.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(replicas.len(), 6);
    // Prometheus lists its targets shortly after it is ready, once discovery has run.
    let started = Instant::now();
    let targets = loop {
        let (status, body) = client::http_get(&prometheus, "/api/v1/targets").await;
        assert_eq!(status, 200, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        let targets: BTreeSet<(String, String)> = body["data"]["activeTargets"]
            .as_array()
            .expect("activeTargets")
            .iter()
            .filter(|t| t["labels"]["job"] == "webshop")
            .map(|t| {
                let label = |k: &str| t["labels"][k].as_str().unwrap_or_default().to_string();
                assert_eq!(
                    t["scrapeUrl"],
                    format!("http://{}/metrics", label("instance"))
                );
                (label("instance"), label("service"))
            })
            .collect();
        if targets == replicas || started.elapsed() > Duration::from_secs(30) {
            break targets;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(targets, replicas);
    let rules = client::http_get(&prometheus, "/api/v1/rules").await.1;
    assert!(
        rules.contains("CheckoutTransactionsStuck"),
        "alert rules not loaded: {rules}"
    );
    stack.stop().await.expect("stop");
}
