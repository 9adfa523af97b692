//! `/payment/...`: the public HTTP API of the payment service.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::http::{Message, Params, require_admin};
use common::input::{self, Amount, Count};
use common::ledger::Direction;
use common::service::Participant;
use common::{Error, Noun, Result};
use serde::Serialize;

pub fn router(app: Participant) -> Router {
    let routes = Router::new()
        .route("/payment/create_user", post(create_user))
        .route("/payment/batch_init/{n}/{starting_money}", post(batch_init))
        .route("/payment/find_user/{user_id}", get(find_user))
        .route("/payment/add_funds/{user_id}/{amount}", post(add_funds))
        .route("/payment/pay/{user_id}/{amount}", post(pay));
    common::http::with_common_routes(routes, app.deps.readiness()).with_state(app)
}

#[derive(Serialize)]
struct User {
    user_id: String,
    credit: i64,
}

#[derive(Serialize)]
struct Created {
    user_id: String,
}

#[derive(Serialize)]
struct Done {
    done: bool,
}

async fn create_user(State(app): State<Participant>) -> Result<Json<Created>> {
    let user_id = app.ledger.create(None).await?;
    Ok(Json(Created { user_id }))
}

async fn batch_init(
    State(app): State<Participant>,
    headers: HeaderMap,
    Params((n, money)): Params<(String, String)>,
) -> Result<Json<Message>> {
    require_admin(&headers, app.deps.settings.admin_token.as_deref())?;
    let n = Count::parse(&n, "n")?.get();
    let money = Amount::parse(&money, "starting_money")?.get();
    app.ledger.batch_init(n, money, None).await?;
    Ok(Json(Message::new(format!(
        "batch init for users successful: {n} users"
    ))))
}

async fn find_user(
    State(app): State<Participant>,
    Params(id): Params<String>,
) -> Result<Json<User>> {
    let user_id = input::id(&id, "user_id")?;
    match app.ledger.find(&user_id).await? {
        Some(user) => Ok(Json(User {
            user_id,
            credit: user.available,
        })),
        None => Err(Error::not_found(Noun::User, user_id)),
    }
}

async fn add_funds(
    app: State<Participant>,
    params: Params<(String, String)>,
) -> Result<Json<Done>> {
    adjust(app, params, Direction::Add).await?;
    Ok(Json(Done { done: true }))
}

async fn pay(app: State<Participant>, params: Params<(String, String)>) -> Result<Json<User>> {
    let (user_id, credit) = adjust(app, params, Direction::Take).await?;
    Ok(Json(User { user_id, credit }))
}

/// Adds to or takes from a user's credit; returns the user and the credit after it.
async fn adjust(
    State(app): State<Participant>,
    Params((id, amount)): Params<(String, String)>,
    direction: Direction,
) -> Result<(String, i64)> {
    let user_id = input::id(&id, "user_id")?;
    let amount = Amount::parse(&amount, "amount")?.get();
    let credit = app.ledger.adjust(&user_id, direction, amount).await?;
    Ok((user_id, credit))
}
