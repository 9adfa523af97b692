//! Loading the data set through the three `batch_init` endpoints.

use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::client::Api;

/// The data set, by default the course's stress-test data: 100 000 users, items and orders,
/// item price 1, so every order costs 2; stock and credit are ample, so every checkout of the
/// benchmark should succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct Population {
    /// Users `0..N` created by `/payment/batch_init`.
    #[arg(long, default_value_t = Population::course().users)]
    pub users: u32,
    /// Items `0..N` created by `/stock/batch_init`.
    #[arg(long, default_value_t = Population::course().items)]
    pub items: u32,
    /// Orders `0..N` created by `/orders/batch_init`, each with two random items.
    #[arg(long, default_value_t = Population::course().orders)]
    pub orders: u32,
    /// Price of every item.
    #[arg(long, default_value_t = Population::course().item_price)]
    pub item_price: i64,
    /// Starting stock of every item.
    #[arg(long, default_value_t = Population::course().stock)]
    pub stock: i64,
    /// Starting credit of every user.
    #[arg(long, default_value_t = Population::course().credit)]
    pub credit: i64,
}

impl Population {
    /// The course's stress-test data.
    pub const fn course() -> Self {
        Population {
            users: 100_000,
            items: 100_000,
            orders: 100_000,
            item_price: 1,
            stock: 1_000_000,
            credit: 1_000_000,
        }
    }
}

/// Creates users, then items, then orders (which refer to both).
pub async fn populate(api: &Api, p: &Population) -> Result<()> {
    populate_via(api, api, p).await
}

/// [`populate`], sending the orders' `batch_init` to `orders_api`: millions of orders take
/// longer than the gateway waits for an answer (nginx's `proxy_read_timeout`, 60 s), so the
/// soak sends that one to an order replica directly.
pub async fn populate_via(api: &Api, orders_api: &Api, p: &Population) -> Result<()> {
    let t = Instant::now();
    api.post_ok(&format!("/payment/batch_init/{}/{}", p.users, p.credit))
        .await?;
    api.post_ok(&format!(
        "/stock/batch_init/{}/{}/{}",
        p.items, p.stock, p.item_price
    ))
    .await?;
    orders_api
        .post_ok(&format!(
            "/orders/batch_init/{}/{}/{}/{}",
            p.orders, p.items, p.users, p.item_price
        ))
        .await?;
    eprintln!(
        "  populated {} users, {} items, {} orders in {:.1} s",
        p.users,
        p.items,
        p.orders,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
