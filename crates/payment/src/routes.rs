//! `/payment/...`: the public HTTP API of the payment service.

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
        .route("/payment/create_user", post(create_user))
        .route("/payment/batch_init/{n}/{starting_money}", post(batch_init))
        .route("/payment/find_user/{user_id}", get(find_user))
        .route("/payment/add_funds/{user_id}/{amount}", post(add_funds))
        .route("/payment/pay/{user_id}/{amount}", post(pay));
    common::http::with_common_routes(routes, app.deps.readiness()).with_state(app)
}

type P<T> = Result<Path<T>, PathRejection>;

async fn create_user(State(app): State<App>) -> Result<Json<Value>> {
    let id = uuid::Uuid::new_v4().to_string();
    let mut redis = app.deps.redis.clone();
    let _: () = redis.hset(app.ledger.key(&id), "credit", 0).await?;
    Ok(Json(json!({ "user_id": id })))
}

async fn batch_init(State(app): State<App>, path: P<(String, String)>) -> Result<Json<Value>> {
    let Path((n, money)) = path.map_err(common::http::path_error)?;
    let n = Count::parse(&n, "n")?;
    let money = Amount::parse(&money, "starting_money")?;
    let mut redis = app.deps.redis.clone();
    for chunk in common::db::chunks(n.get(), 10_000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.del(app.ledger.key(&i.to_string())).ignore();
            pipe.hset(app.ledger.key(&i.to_string()), "credit", money.get())
                .ignore();
        }
        let _: () = pipe.query_async(&mut redis).await?;
    }
    Ok(Json(
        json!({ "msg": format!("batch init for users successful: {} users", n.get()) }),
    ))
}

async fn find_user(State(app): State<App>, path: P<String>) -> Result<Json<Value>> {
    let Path(id) = path.map_err(common::http::path_error)?;
    let id = input::id(&id, "user_id")?;
    let key = app.ledger.key(&id);
    let credit: Option<i64> = common::db::retry(common::db::READ_PATIENCE, || {
        let (mut redis, key) = (app.deps.redis.clone(), key.clone());
        async move { Ok(redis.hget(key, "credit").await?) }
    })
    .await?;
    match credit {
        Some(credit) => Ok(Json(json!({ "user_id": id, "credit": credit }))),
        None => Err(Error::not_found("user", id)),
    }
}

async fn add_funds(State(app): State<App>, path: P<(String, String)>) -> Result<Json<Value>> {
    let (id, amount) = parse(path)?;
    match app.ledger.adjust(&id, i128::from(amount.get())).await? {
        Adjusted::Ok(_) => Ok(Json(json!({ "done": true }))),
        Adjusted::NotFound => Err(Error::not_found("user", id)),
        Adjusted::Overflow => Err(Error::BadInput(format!(
            "adding {} to user {id:?} would overflow the credit",
            amount.get()
        ))),
        Adjusted::TooLittle => Err(Error::Internal("adding funds cannot go below zero".into())),
    }
}

async fn pay(State(app): State<App>, path: P<(String, String)>) -> Result<Json<Value>> {
    let (id, amount) = parse(path)?;
    match app.ledger.adjust(&id, -i128::from(amount.get())).await? {
        Adjusted::Ok(credit) => Ok(Json(json!({ "user_id": id, "credit": credit }))),
        Adjusted::NotFound => Err(Error::not_found("user", id)),
        Adjusted::TooLittle => Err(Error::refused(
            "insufficient_credit",
            format!("user {id:?} has less than {} credit", amount.get()),
        )),
        Adjusted::Overflow => Err(Error::Internal("paying cannot overflow".into())),
    }
}

fn parse(path: P<(String, String)>) -> Result<(String, Amount)> {
    let Path((id, amount)) = path.map_err(common::http::path_error)?;
    Ok((
        input::id(&id, "user_id")?,
        Amount::parse(&amount, "amount")?,
    ))
}
