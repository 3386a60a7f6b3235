//! Thin HTTP handlers, one module per concern, each with its own `router()`. They parse the
//! request, call `linkedin` and `session`, and return `Result`; they never sign, never talk
//! to LinkedIn directly and never build an error response by hand.
//!
//! Every route of the public port is registered through [`Routes::at`], which also notes
//! `(method, path)` in the route table that [`openapi`]'s test holds the OpenAPI document
//! against (axum cannot list a router's routes).

use std::cell::RefCell;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};

// The sign-in and member routes are the library's; the rest are the server's.
pub(crate) mod account;
#[cfg(feature = "server")]
pub(crate) mod admin;
pub(crate) mod api;
#[cfg(feature = "server")]
pub(crate) mod assets;
#[cfg(feature = "server")]
pub(crate) mod auth_check;
pub(crate) mod exchange;
#[cfg(feature = "server")]
pub(crate) mod health;
#[cfg(feature = "server")]
pub(crate) mod login;
pub(crate) mod member;
pub(crate) mod oidc;
#[cfg(feature = "server")]
pub(crate) mod openapi;

/// The methods the public routes take (`HEAD` comes with `GET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    /// The method's name, as in `Allow`.
    #[cfg(all(test, feature = "server", feature = "sandbox"))]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    /// The verb of `method`, when routes can take it (any other method gets 405).
    pub(crate) fn of(method: &Method) -> Option<Self> {
        match *method {
            Method::GET | Method::HEAD => Some(Self::Get),
            Method::POST => Some(Self::Post),
            Method::PUT => Some(Self::Put),
            Method::PATCH => Some(Self::Patch),
            Method::DELETE => Some(Self::Delete),
            _ => None,
        }
    }

    /// Whether a request of this verb may change state (and needs the page's origin).
    pub(crate) fn changes_state(self) -> bool {
        self != Self::Get
    }

    fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Put => MethodFilter::PUT,
            Self::Patch => MethodFilter::PATCH,
            Self::Delete => MethodFilter::DELETE,
        }
    }
}

/// A recorded route: its method and its path (axum's syntax, `{param}`).
pub(crate) type RouteEntry = (Verb, String);

thread_local! {
    /// The route table being recorded on this thread, while [`record`] runs.
    static TABLE: RefCell<Option<Vec<RouteEntry>>> = const { RefCell::new(None) };
}

/// Registering a route and noting it in the route table.
pub(crate) trait Routes<S> {
    /// `self.route(path, on(verb, handler))`, noted as `(verb, path)`. Several verbs of one
    /// path merge into one route.
    fn at<H, T>(self, verb: Verb, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static;
}

impl<S: Clone + Send + Sync + 'static> Routes<S> for Router<S> {
    fn at<H, T>(self, verb: Verb, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        note(verb, path.to_owned());
        self.route(path, on(verb.filter(), handler))
    }
}

fn note(verb: Verb, path: String) {
    TABLE.with(|table| {
        if let Some(table) = table.borrow_mut().as_mut() {
            table.push((verb, path));
        }
    });
}

/// `build()` (a router meant to be nested at `prefix`), with its routes noted under `prefix`.
#[cfg(all(feature = "server", feature = "sandbox"))]
pub(crate) fn under<R>(prefix: &str, build: impl FnOnce() -> R) -> R {
    let (router, routes) = capture(build);
    for (verb, path) in routes {
        note(verb, format!("{prefix}{path}"));
    }
    router
}

/// Runs `build` (on this thread) and returns what it built with the routes it registered,
/// which are noted in any recording around this one too.
pub(crate) fn record<R>(build: impl FnOnce() -> R) -> (R, Vec<RouteEntry>) {
    let (built, routes) = capture(build);
    for (verb, path) in &routes {
        note(*verb, path.clone());
    }
    (built, routes)
}

/// `build()` and the routes it registered (sorted, without duplicates), noted nowhere else.
fn capture<R>(build: impl FnOnce() -> R) -> (R, Vec<RouteEntry>) {
    let outer = TABLE.with(|table| table.replace(Some(Vec::new())));
    let built = build();
    let mut routes = TABLE.with(|table| table.replace(outer)).unwrap_or_default();
    routes.sort();
    routes.dedup();
    (built, routes)
}

/// [`record`] for an async build (a server's), polled on this thread: a current-thread
/// runtime's test.
#[cfg(all(test, feature = "server", feature = "sandbox"))]
pub(crate) async fn record_async<F: std::future::Future>(build: F) -> (F::Output, Vec<RouteEntry>) {
    let outer = TABLE.with(|table| table.replace(Some(Vec::new())));
    let built = build.await;
    let mut routes = TABLE.with(|table| table.replace(outer)).unwrap_or_default();
    routes.sort();
    routes.dedup();
    (built, routes)
}
