//! [`Gate`]: a middleware that decides from the request alone, as `axum::middleware::from_fn`
//! would, but without what `from_fn` pays at every request: a clone of every service beneath
//! it (down to the handler's), that clone boxed as `Next`, and the middleware's future boxed.
//! A request the gate lets through goes straight to the service beneath; only the rare
//! decision that needs to wait (a store read) takes a clone and a box.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tower::{Layer, Service, ServiceExt};

/// What a gate decides for one request.
pub(crate) enum Verdict {
    /// Let it through (changed or not).
    Pass(Request),
    /// Answer it here.
    Answer(Response),
    /// Decide once this future is done: the request to let through, or the answer.
    Later(Pin<Box<dyn Future<Output = Result<Request, Response>> + Send>>),
}

/// The layer of a [`Gate`] deciding with `decide` and its `state`.
#[derive(Clone)]
pub(crate) struct GateLayer<T> {
    state: T,
    decide: fn(&T, Request) -> Verdict,
}

impl<T> GateLayer<T> {
    /// Gates each request with `decide(&state, request)`.
    pub(crate) fn new(state: T, decide: fn(&T, Request) -> Verdict) -> Self {
        Self { state, decide }
    }
}

impl<S, T: Clone> Layer<S> for GateLayer<T> {
    type Service = Gate<S, T>;

    fn layer(&self, inner: S) -> Gate<S, T> {
        Gate {
            inner,
            state: self.state.clone(),
            decide: self.decide,
        }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub(crate) struct Gate<S, T> {
    inner: S,
    state: T,
    decide: fn(&T, Request) -> Verdict,
}

impl<S, T> Service<Request> for Gate<S, T>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match (self.decide)(&self.state, request) {
            Verdict::Pass(request) => Box::pin(self.inner.call(request)),
            Verdict::Answer(response) => Box::pin(std::future::ready(Ok(response))),
            Verdict::Later(decision) => {
                let inner = self.inner.clone();
                Box::pin(async move {
                    match decision.await {
                        Ok(request) => inner.oneshot(request).await,
                        Err(response) => Ok(response),
                    }
                })
            }
        }
    }
}
