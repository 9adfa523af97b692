//! `/orders/...`: the public HTTP API of the order service (and the console's routes).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::http::{Message, Params, require_admin};
use common::input::{self, Amount, Count, Quantity};
use common::{Error, Noun, Result};
use serde::Serialize;

use common::service::Deps;

use crate::checkout::Coordinator;
use crate::orders::{NewOrders, Orders, already_paid, overflow};
use crate::prices::Prices;

/// Shared state of the handlers.
pub struct App {
    pub deps: Deps,
    pub orders: Orders,
    pub prices: Prices,
    pub coordinator: Arc<Coordinator>,
}

pub fn router(app: Arc<App>) -> Router {
    let routes = Router::new()
        .route("/orders/create/{user_id}", post(create))
        .route(
            "/orders/batch_init/{n}/{n_items}/{n_users}/{item_price}",
            post(batch_init),
        )
        .route("/orders/find/{order_id}", get(find))
        .route(
            "/orders/addItem/{order_id}/{item_id}/{quantity}",
            post(add_item),
        )
        .route("/orders/checkout/{order_id}", post(checkout))
        .merge(crate::console::routes(crate::console::Source {
            redis: app.deps.redis.clone(),
            replica: app.deps.settings.replica_id.clone(),
            protocol: app.deps.settings.protocol.as_str(),
        }));
    common::http::with_common_routes(routes, app.deps.readiness()).with_state(app)
}

#[derive(Serialize)]
struct Created {
    order_id: String,
}

#[derive(Serialize)]
struct Found {
    order_id: String,
    paid: bool,
    items: Vec<(String, i64)>,
    user_id: String,
    total_cost: i64,
}

#[derive(Serialize)]
struct ItemAdded {
    order_id: String,
    item_id: String,
    quantity: i64,
    total_cost: i64,
}

#[derive(Serialize)]
struct Paid {
    order_id: String,
    paid: bool,
}

async fn create(
    State(app): State<Arc<App>>,
    Params(user_id): Params<String>,
) -> Result<Json<Created>> {
    let user_id = input::id(&user_id, "user_id")?;
    let order_id = app.orders.create(&user_id).await?;
    Ok(Json(Created { order_id }))
}

async fn batch_init(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Params((n, n_items, n_users, price)): Params<(String, String, String, String)>,
) -> Result<Json<Message>> {
    require_admin(&headers, app.deps.settings.admin_token.as_deref())?;
    let n = Count::parse(&n, "n")?.get();
    let n_items = Count::parse(&n_items, "n_items")?.get();
    let n_users = Count::parse(&n_users, "n_users")?.get();
    let price = Amount::parse(&price, "item_price")?.get();
    if n > 0 && (n_items == 0 || n_users == 0) {
        return Err(Error::BadInput(
            "n_items and n_users must be at least 1 to make orders".into(),
        ));
    }
    let total = price.checked_mul(2).ok_or_else(|| {
        Error::BadInput("item_price is too large: twice it must fit in 64 bits".into())
    })?;
    let batch = NewOrders {
        n,
        n_items,
        n_users,
        total,
    };
    app.orders
        .batch_init(batch, crate::checkout::log::ACTIVE)
        .await?;
    Ok(Json(Message::new(format!(
        "batch init for orders successful: {n} orders"
    ))))
}

async fn find(State(app): State<Arc<App>>, Params(id): Params<String>) -> Result<Json<Found>> {
    let order_id = input::id(&id, "order_id")?;
    let order = app
        .orders
        .find(&order_id)
        .await?
        .ok_or_else(|| Error::not_found(Noun::Order, &order_id))?;
    Ok(Json(Found {
        order_id,
        paid: order.paid,
        items: order.items,
        user_id: order.user_id,
        total_cost: order.total_cost,
    }))
}

async fn add_item(
    State(app): State<Arc<App>>,
    Params((id, item_id, quantity)): Params<(String, String, String)>,
) -> Result<Json<ItemAdded>> {
    let order_id = input::id(&id, "order_id")?;
    let item_id = input::id(&item_id, "item_id")?;
    let quantity = Quantity::parse(&quantity)?.get();
    // Refuse early, before asking another service: the script checks again atomically.
    let order = app
        .orders
        .find(&order_id)
        .await?
        .ok_or_else(|| Error::not_found(Noun::Order, &order_id))?;
    if order.paid {
        return Err(already_paid(&order_id));
    }
    let price = app.prices.get(&item_id).await?;
    let cost = quantity
        .checked_mul(price)
        .ok_or_else(|| overflow(&order_id))?;
    let total_cost = app
        .orders
        .add_item(&order_id, &item_id, quantity, cost)
        .await?;
    Ok(Json(ItemAdded {
        order_id,
        item_id,
        quantity,
        total_cost,
    }))
}

async fn checkout(State(app): State<Arc<App>>, Params(id): Params<String>) -> Result<Json<Paid>> {
    let order_id = input::id(&id, "order_id")?;
    app.coordinator.checkout(&order_id).await?;
    Ok(Json(Paid {
        order_id,
        paid: true,
    }))
}
