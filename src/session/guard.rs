//! [`guard`]: the middleware that makes each request's store changes land in a safe order,
//! and the journal it keeps for the request.
//!
//! Deletes made while a request runs (`cycle_id`'s removal of the old id, a logout) are held
//! back until the request's writes have succeeded: a sign-in writes the new record before the
//! old one goes, and a failed write leaves the previous session exactly as it was.

use std::sync::{Arc, Mutex};

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};
use tower_sessions::session::Id;
use tower_sessions::session_store::{self, SessionStore};

use crate::error::{AppError, LoggedError};

tokio::task_local! {
    /// The store changes of the request running on this task.
    static JOURNAL: Arc<Journal>;
}

/// Holds `id`'s delete back until the request running on this task has written its session;
/// `false` outside a request (the caller then deletes at once).
pub(super) fn defer_delete(id: Id) -> bool {
    JOURNAL.try_with(|journal| journal.defer_delete(id)).is_ok()
}

/// Notes a failed store operation in the journal of the request running on this task, if any.
pub(super) fn note_failure(operation: &'static str, err: &session_store::Error) {
    let _ = JOURNAL.try_with(|journal| journal.failed(operation, err));
}

/// What a request did to the store that must be finished, or answered, after the session
/// layer has written the session.
#[derive(Default)]
struct Journal {
    deferred_deletes: Mutex<Vec<Id>>,
    failure: Mutex<Option<(&'static str, String)>>,
}

impl Journal {
    fn defer_delete(&self, id: Id) {
        if let Ok(mut ids) = self.deferred_deletes.lock() {
            ids.push(id);
        }
    }

    fn failed(&self, operation: &'static str, err: &session_store::Error) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert((operation, err.to_string()));
        }
    }

    fn take(&self) -> (Vec<Id>, Option<(&'static str, String)>) {
        let ids = self
            .deferred_deletes
            .lock()
            .map(|mut ids| std::mem::take(&mut *ids))
            .unwrap_or_default();
        let failure = self.failure.lock().ok().and_then(|mut f| f.take());
        (ids, failure)
    }
}

/// Wraps the session layer: answers a store failure in the layer's own save (which the layer
/// would answer with an empty 500) as 503 `session_store_unavailable`, and carries out the
/// request's deletes once its writes have succeeded. A delete that fails turns the answer
/// into a 503 too: the browser then keeps its old session id, and that session is intact.
///
/// A layer of its own rather than `axum::middleware::from_fn`, which would clone every
/// service beneath at each request and box that clone as `Next`.
pub(crate) fn guard<S: SessionStore + Clone>(store: S) -> GuardLayer<S> {
    GuardLayer { store }
}

/// The layer of [`guard`].
#[derive(Clone)]
pub(crate) struct GuardLayer<S> {
    store: S,
}

impl<S: Clone, I> Layer<I> for GuardLayer<S> {
    type Service = Guard<S, I>;

    fn layer(&self, inner: I) -> Guard<S, I> {
        Guard {
            store: self.store.clone(),
            inner,
        }
    }
}

/// The service of [`guard`].
#[derive(Clone)]
pub(crate) struct Guard<S, I> {
    store: S,
    inner: I,
}

impl<S, I> Service<Request> for Guard<S, I>
where
    S: SessionStore + Clone,
    I: Service<Request, Response = Response, Error = Infallible>,
    I::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let journal = Arc::new(Journal::default());
        // The request's journal holds for what the services beneath do when called, and
        // while their answer is awaited.
        let answer = JOURNAL.sync_scope(journal.clone(), || self.inner.call(request));
        let store = self.store.clone();
        Box::pin(async move {
            let response = match JOURNAL.scope(journal.clone(), answer).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(finish(&store, &journal, response).await)
        })
    }
}

/// What [`guard`] does once the request is answered: its failure reported, its deletes done.
async fn finish<S: SessionStore>(store: &S, journal: &Journal, response: Response) -> Response {
    let (deletes, failure) = journal.take();
    // The session layer's own answer to a failed save: an empty 500.
    if let Some((operation, detail)) = failure
        && response.extensions().get::<LoggedError>().is_none()
        && response.status().is_server_error()
    {
        return store_unavailable(operation, detail);
    }
    if response.status().is_server_error() {
        return response;
    }
    // Outside the journal's scope a store's delete is carried out at once.
    for id in deletes {
        if let Err(err) = store.delete(&id).await {
            return store_unavailable("delete", err.to_string());
        }
    }
    response
}

fn store_unavailable(operation: &'static str, detail: String) -> Response {
    AppError::SessionStore(session_store::Error::Backend(format!(
        "{operation}: {detail}"
    )))
    .into_response()
}
