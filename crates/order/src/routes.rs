//! `/orders/...`: the public HTTP API of the order service.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::input::{self, Amount, Count, Quantity};
use common::{Error, Result};
use rand::Rng;
use serde_json::{Value, json};

use crate::App;
use crate::store::AddItem;

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
        .route("/orders/checkout/{order_id}", post(checkout));
    common::http::with_common_routes(routes, app.deps.readiness()).with_state(app)
}

type P<T> = Result<Path<T>, PathRejection>;

async fn create(State(app): State<Arc<App>>, path: P<String>) -> Result<Json<Value>> {
    let Path(user_id) = path.map_err(common::http::path_error)?;
    let user_id = input::id(&user_id, "user_id")?;
    let id = uuid::Uuid::new_v4().to_string();
    app.store.create(&id, &user_id).await?;
    Ok(Json(json!({ "order_id": id })))
}

async fn batch_init(
    State(app): State<Arc<App>>,
    path: P<(String, String, String, String)>,
) -> Result<Json<Value>> {
    let Path((n, n_items, n_users, price)) = path.map_err(common::http::path_error)?;
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
    for chunk in common::db::chunks(n, 10_000) {
        let orders: Vec<(u64, u64, [u64; 2])> = {
            let mut rng = rand::rng();
            chunk
                .map(|id| {
                    let items = [rng.random_range(0..n_items), rng.random_range(0..n_items)];
                    (id, rng.random_range(0..n_users), items)
                })
                .collect()
        };
        app.store.put_many(&orders, total).await?;
    }
    Ok(Json(
        json!({ "msg": format!("batch init for orders successful: {n} orders") }),
    ))
}

async fn find(State(app): State<Arc<App>>, path: P<String>) -> Result<Json<Value>> {
    let Path(id) = path.map_err(common::http::path_error)?;
    let id = input::id(&id, "order_id")?;
    let order = common::db::retry(common::db::READ_PATIENCE, || app.store.find(&id))
        .await?
        .ok_or_else(|| Error::not_found("order", &id))?;
    Ok(Json(json!({
        "order_id": id,
        "paid": order.paid,
        "items": order.items,
        "user_id": order.user_id,
        "total_cost": order.total_cost,
    })))
}

async fn add_item(
    State(app): State<Arc<App>>,
    path: P<(String, String, String)>,
) -> Result<Json<Value>> {
    let Path((id, item_id, quantity)) = path.map_err(common::http::path_error)?;
    let id = input::id(&id, "order_id")?;
    let item_id = input::id(&item_id, "item_id")?;
    let quantity = Quantity::parse(&quantity)?.get();
    // Refuse early, before asking another service: the script checks again atomically.
    let order = common::db::retry(common::db::READ_PATIENCE, || app.store.find(&id))
        .await?
        .ok_or_else(|| Error::not_found("order", &id))?;
    if order.paid {
        return Err(already_paid(&id));
    }
    let price = app.prices.get(&item_id).await?;
    let cost = quantity.checked_mul(price).ok_or_else(|| overflow(&id))?;
    match app.store.add_item(&id, &item_id, quantity, cost).await? {
        AddItem::Ok => {
            let total = order.total_cost.saturating_add(cost);
            Ok(Json(
                json!({ "order_id": id, "item_id": item_id, "quantity": quantity, "total_cost": total }),
            ))
        }
        AddItem::NotFound => Err(Error::not_found("order", &id)),
        AddItem::Paid => Err(already_paid(&id)),
        AddItem::Busy => Err(Error::refused(
            "checkout_in_progress",
            format!("order {id:?} is being checked out; items cannot change now"),
        )),
        AddItem::Overflow => Err(overflow(&id)),
    }
}

async fn checkout(State(app): State<Arc<App>>, path: P<String>) -> Result<Json<Value>> {
    let Path(id) = path.map_err(common::http::path_error)?;
    let id = input::id(&id, "order_id")?;
    app.coordinator.checkout(&id).await?;
    Ok(Json(json!({ "order_id": id, "paid": true })))
}

fn already_paid(id: &str) -> Error {
    Error::refused("already_paid", format!("order {id:?} is already paid"))
}

fn overflow(id: &str) -> Error {
    Error::BadInput(format!("the total cost of order {id:?} would overflow"))
}
