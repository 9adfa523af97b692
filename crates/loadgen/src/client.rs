//! A thin client for the public API (DESIGN.md §1), shared by every task.
//!
//! One pooled `reqwest::Client` serves all workers: HTTP/1.1 keep-alive to the gateway, no proxy
//! lookup, Nagle off. Bodies are always read to the end so connections go back to the pool.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// How one request ended, as the benchmark counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// 2xx: for checkout, the order is paid.
    Ok,
    /// 4xx: a business refusal (or bad input); nothing changed.
    Refused,
    /// 503: overloaded (admission control) or not decided in time; safe to retry.
    Unavailable,
    /// Another 5xx or unexpected status: the system is broken.
    ServerError,
    /// No HTTP answer at all: connection error.
    Transport,
    /// No answer within the client's timeout; the request was abandoned.
    Timeout,
}

impl Class {
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=299 => Class::Ok,
            400..=499 => Class::Refused,
            503 => Class::Unavailable,
            _ => Class::ServerError,
        }
    }

    fn of_error(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            Class::Timeout
        } else {
            Class::Transport
        }
    }
}

/// `GET /orders/find/{id}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Order {
    pub paid: bool,
    pub items: Vec<(String, i64)>,
    pub user_id: String,
    pub total_cost: i64,
}

/// `GET /stock/find/{id}`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub struct Item {
    pub stock: i64,
    pub price: i64,
}

/// `GET /payment/find_user/{id}`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub struct User {
    pub credit: i64,
}

/// The gateway plus a connection pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// Reads are retried this often on 5xx or transport errors before they count as unreadable.
const READ_ATTEMPTS: u32 = 5;

impl Api {
    /// `pool` is the number of connections kept open: set it to the concurrency.
    pub fn new(gateway: &str, pool: usize, timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .http1_only()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool)
            .pool_idle_timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: gateway.trim_end_matches('/').to_owned(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /orders/checkout/{id}`; never fails, the outcome is the class.
    pub async fn checkout(&self, order: u32, url: &mut String) -> Class {
        use std::fmt::Write;
        url.clear();
        // Writing into a String cannot fail.
        let _ = write!(url, "{}/orders/checkout/{order}", self.base);
        match self.http.post(url.as_str()).send().await {
            Ok(resp) => {
                let class = Class::of_status(resp.status().as_u16());
                // Drain the body so the connection is reused.
                match resp.bytes().await {
                    Ok(_) => class,
                    Err(e) => Class::of_error(&e),
                }
            }
            Err(e) => Class::of_error(&e),
        }
    }

    /// A POST that must succeed (the `batch_init` calls); returns the body.
    pub async fn post_ok(&self, path: &str) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .post(&url)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let body = resp.text().await.with_context(|| format!("POST {url}"))?;
        if !status.is_success() {
            bail!("POST {url} answered {status}: {body}");
        }
        Ok(body)
    }

    /// A GET of one entity. `Ok(None)` means a 4xx (unknown id); 5xx and transport errors are
    /// retried a few times and then reported as errors.
    pub async fn find<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        for attempt in 0..READ_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
            let resp = match self.http.get(&url).send().await {
                Ok(resp) => resp,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let status = resp.status();
            let body = match resp.bytes().await {
                Ok(body) => body,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            match Class::of_status(status.as_u16()) {
                Class::Ok => {
                    return serde_json::from_slice(&body)
                        .map(Some)
                        .with_context(|| format!("GET {url}: unexpected body"));
                }
                Class::Refused => return Ok(None),
                _ => last = format!("status {status}"),
            }
        }
        bail!("GET {url} failed {READ_ATTEMPTS} times, last: {last}")
    }

    pub async fn find_order(&self, id: u32) -> Result<Option<Order>> {
        self.find(&format!("/orders/find/{id}")).await
    }

    pub async fn find_item(&self, id: u32) -> Result<Option<Item>> {
        self.find(&format!("/stock/find/{id}")).await
    }

    pub async fn find_user(&self, id: u32) -> Result<Option<User>> {
        self.find(&format!("/payment/find_user/{id}")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(Class::of_status(200), Class::Ok);
        assert_eq!(Class::of_status(201), Class::Ok);
        assert_eq!(Class::of_status(400), Class::Refused);
        assert_eq!(Class::of_status(404), Class::Refused);
        assert_eq!(Class::of_status(500), Class::ServerError);
        assert_eq!(Class::of_status(502), Class::ServerError);
        assert_eq!(Class::of_status(503), Class::Unavailable);
        assert_eq!(Class::of_status(302), Class::ServerError);
    }

    #[test]
    fn order_body_parses() {
        let o: Order = serde_json::from_str(
            r#"{"order_id":"7","paid":true,"items":[["3",1],["9",2]],"user_id":"4","total_cost":3}"#,
        )
        .unwrap();
        assert!(o.paid);
        assert_eq!(o.items, vec![("3".into(), 1), ("9".into(), 2)]);
        assert_eq!(o.user_id, "4");
        assert_eq!(o.total_cost, 3);
    }
}
