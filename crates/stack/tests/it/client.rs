//! Small clients for the tests, over the workspace's Redis and HTTP client crates.

use std::time::Duration;

use redis::AsyncCommands;

/// Every call of a test has a deadline: a gateway or a Redis that never answers fails the
/// test instead of holding it (and the suite) for ever.
const PATIENCE: Duration = Duration::from_secs(30);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("http client")
}

/// `(status, body)` of `GET path`.
pub async fn http_get(base: &str, path: &str) -> (u16, String) {
    answer(http().get(format!("{base}{path}"))).await
}

/// `(status, body)` of `POST path` without a body.
pub async fn http_post(base: &str, path: &str) -> (u16, String) {
    answer(http().post(format!("{base}{path}"))).await
}

/// The JSON answer of `POST path`, which must succeed.
pub async fn post_ok(base: &str, path: &str) -> serde_json::Value {
    let (status, body) = http_post(base, path).await;
    assert_eq!(status, 200, "POST {path}: {body}");
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.expect("request reaches the gateway");
    let status = response.status().as_u16();
    (status, response.text().await.expect("response body"))
}

/// A fresh connection to the Redis at `url`. The client's own timeouts (1 s to connect, 0.5 s
/// to answer) are for services; a test that reads while three suites share two cores waits
/// longer.
pub async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("redis url");
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(PATIENCE))
        .set_response_timeout(Some(PATIENCE));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect redis")
}

pub async fn set(url: &str, key: &str, value: &str) {
    let _: () = redis(url)
        .await
        .set(key, value)
        .await
        .expect("SET acknowledged");
}

pub async fn get(url: &str, key: &str) -> Option<String> {
    redis(url).await.get(key).await.expect("GET answered")
}

/// The value of one Redis config parameter (`CONFIG GET`).
pub async fn config_get(url: &str, parameter: &str) -> String {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(parameter)
        .query_async(&mut redis(url).await)
        .await
        .expect("CONFIG GET answered");
    pair.get(1).cloned().unwrap_or_default()
}
