//! `GET /static/*`: the page's JS and CSS, embedded in the binary. No session.

use axum::Router;
use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

use super::{Routes, Verb};
use crate::app::AppState;
use crate::error::AppError;

/// The files under `static/`, with their content types.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    ),
    (
        "account.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/account.js"),
    ),
    (
        "account.css",
        "text/css; charset=utf-8",
        include_str!("../../static/account.css"),
    ),
];

/// The routes of this module.
pub(crate) fn router() -> Router<AppState> {
    Router::new().at(Verb::Get, "/static/{file}", asset)
}

async fn asset(Path(file): Path<String>) -> Result<impl IntoResponse, AppError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or(AppError::NotFound)?;
    Ok((
        [(CONTENT_TYPE, *content_type), (CACHE_CONTROL, "no-cache")],
        *body,
    ))
}
