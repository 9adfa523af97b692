//! `/stock/...`: the public HTTP API of the stock service.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::input::{self, Amount, Count};
use common::ledger::Adjusted;
use common::{Error, Result};
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::App;

pub fn router(app: App) -> Router {
    let routes = Router::new()
        .route("/stock/item/create/{price}", post(create))
        .route(
            "/stock/batch_init/{n}/{starting_stock}/{item_price}",
            post(batch_init),
        )
        .route("/stock/find/{item_id}", get(find))
        .route("/stock/add/{item_id}/{amount}", post(add))
        .route("/stock/subtract/{item_id}/{amount}", post(subtract));
    common::http::with_common_routes(routes, app.deps.readiness()).with_state(app)
}

type P<T> = Result<Path<T>, PathRejection>;

async fn create(State(app): State<App>, path: P<String>) -> Result<Json<Value>> {
    let Path(price) = path.map_err(common::http::path_error)?;
    let price = Amount::parse(&price, "price")?;
    let id = uuid::Uuid::new_v4().to_string();
    let mut redis = app.deps.redis.clone();
    let _: () = redis
        .hset_multiple(app.ledger.key(&id), &[("stock", 0), ("price", price.get())])
        .await?;
    Ok(Json(json!({ "item_id": id })))
}

async fn batch_init(
    State(app): State<App>,
    path: P<(String, String, String)>,
) -> Result<Json<Value>> {
    let Path((n, stock, price)) = path.map_err(common::http::path_error)?;
    let n = Count::parse(&n, "n")?;
    let (stock, price) = (
        Amount::parse(&stock, "starting_stock")?,
        Amount::parse(&price, "item_price")?,
    );
    let mut redis = app.deps.redis.clone();
    for chunk in common::db::chunks(n.get(), 10_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.del(app.ledger.key(&i.to_string())).ignore();
            pipe.hset_multiple(
                app.ledger.key(&i.to_string()),
                &[("stock", stock.get()), ("price", price.get())],
            )
            .ignore();
        }
        let _: () = pipe.query_async(&mut redis).await?;
    }
    Ok(Json(
        json!({ "msg": format!("batch init for stock successful: {} items", n.get()) }),
    ))
}

async fn find(State(app): State<App>, path: P<String>) -> Result<Json<Value>> {
    let Path(id) = path.map_err(common::http::path_error)?;
    let id = input::id(&id, "item_id")?;
    let key = app.ledger.key(&id);
    let (stock, price): (Option<i64>, Option<i64>) =
        common::db::retry(common::db::READ_PATIENCE, || {
            let (mut redis, key) = (app.deps.redis.clone(), key.clone());
            async move {
                Ok(redis::cmd("HMGET")
                    .arg(key)
                    .arg("stock")
                    .arg("price")
                    .query_async(&mut redis)
                    .await?)
            }
        })
        .await?;
    match (stock, price) {
        (Some(stock), Some(price)) => Ok(Json(json!({ "stock": stock, "price": price }))),
        _ => Err(Error::not_found("item", id)),
    }
}

async fn add(State(app): State<App>, path: P<(String, String)>) -> Result<Json<Value>> {
    adjust(app, path, 1).await
}

async fn subtract(State(app): State<App>, path: P<(String, String)>) -> Result<Json<Value>> {
    adjust(app, path, -1).await
}

async fn adjust(app: App, path: P<(String, String)>, sign: i128) -> Result<Json<Value>> {
    let Path((id, amount)) = path.map_err(common::http::path_error)?;
    let id = input::id(&id, "item_id")?;
    let amount = Amount::parse(&amount, "amount")?;
    match app
        .ledger
        .adjust(&id, sign * i128::from(amount.get()))
        .await?
    {
        Adjusted::Ok(stock) => Ok(Json(json!({ "item_id": id, "stock": stock }))),
        Adjusted::NotFound => Err(Error::not_found("item", id)),
        Adjusted::TooLittle => Err(Error::refused(
            "out_of_stock",
            format!("item {id:?} has less than {} in stock", amount.get()),
        )),
        Adjusted::Overflow => Err(Error::BadInput(format!(
            "adding {} to item {id:?} would overflow its stock",
            amount.get()
        ))),
    }
}
