//! `/stock/...`: the public HTTP API of the stock service.

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

#[derive(Serialize)]
struct Created {
    item_id: String,
}

#[derive(Serialize)]
struct Item {
    stock: i64,
    price: i64,
}

#[derive(Serialize)]
struct Adjusted {
    item_id: String,
    stock: i64,
}

async fn create(
    State(app): State<Participant>,
    Params(price): Params<String>,
) -> Result<Json<Created>> {
    let price = Amount::parse(&price, "price")?;
    let item_id = app.ledger.create(Some(price.get())).await?;
    Ok(Json(Created { item_id }))
}

async fn batch_init(
    State(app): State<Participant>,
    headers: HeaderMap,
    Params((n, stock, price)): Params<(String, String, String)>,
) -> Result<Json<Message>> {
    require_admin(&headers, app.deps.settings.admin_token.as_deref())?;
    let n = Count::parse(&n, "n")?.get();
    let stock = Amount::parse(&stock, "starting_stock")?.get();
    let price = Amount::parse(&price, "item_price")?.get();
    app.ledger.batch_init(n, stock, Some(price)).await?;
    Ok(Json(Message::new(format!(
        "batch init for stock successful: {n} items"
    ))))
}

async fn find(State(app): State<Participant>, Params(id): Params<String>) -> Result<Json<Item>> {
    let id = input::id(&id, "item_id")?;
    match app.ledger.find(&id).await? {
        Some(item) => Ok(Json(Item {
            stock: item.available,
            price: item.price.unwrap_or(0),
        })),
        None => Err(Error::not_found(Noun::Item, id)),
    }
}

async fn add(app: State<Participant>, params: Params<(String, String)>) -> Result<Json<Adjusted>> {
    adjust(app, params, Direction::Add).await
}

async fn subtract(
    app: State<Participant>,
    params: Params<(String, String)>,
) -> Result<Json<Adjusted>> {
    adjust(app, params, Direction::Take).await
}

async fn adjust(
    State(app): State<Participant>,
    Params((id, amount)): Params<(String, String)>,
    direction: Direction,
) -> Result<Json<Adjusted>> {
    let item_id = input::id(&id, "item_id")?;
    let amount = Amount::parse(&amount, "amount")?.get();
    let stock = app.ledger.adjust(&item_id, direction, amount).await?;
    Ok(Json(Adjusted { item_id, stock }))
}
