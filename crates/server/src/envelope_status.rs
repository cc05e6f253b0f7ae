//! How failures of `POST /api/v1/proxy/remote` reach a caller: by the HTTP
//! status, or, for a caller that reads them from the envelope, by the
//! envelope alone.
//!
//! Python FrameX's client raises when an answer is HTTP 200 with an envelope
//! `status` other than 200, and returns the string `"error proxy"` as the
//! function's result for any other HTTP status. So a failure answered with a
//! real HTTP status would reach a Python caller as a successful call that
//! returned `"error proxy"`. Every answer on this path is a FrameX envelope
//! that carries its status; for a caller that does not send
//! `x-framex-errors: http-status` (every FrameX for Rust client does) the
//! HTTP status of a failure is 200, and the envelope's says what failed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use framex_transport::wire::PROXY_FUNCTION_PATH;
use framex_transport::{ERRORS_BY_STATUS, ERRORS_HEADER};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};

/// Answers failures on the proxy endpoint with HTTP 200 for callers that read
/// them from the envelope (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EnvelopeStatusLayer;

impl<S> Layer<S> for EnvelopeStatusLayer {
    type Service = EnvelopeStatus<S>;

    fn layer(&self, inner: S) -> EnvelopeStatus<S> {
        EnvelopeStatus { inner }
    }
}

/// The service of [`EnvelopeStatusLayer`].
#[derive(Debug, Clone)]
pub(crate) struct EnvelopeStatus<S> {
    inner: S,
}

/// Whether a request's caller is told of failures by the envelope alone.
fn reads_envelope_status<B>(request: &Request<B>) -> bool {
    request.uri().path() == PROXY_FUNCTION_PATH
        && !request
            .headers()
            .get_all(const { http::HeaderName::from_static(ERRORS_HEADER) })
            .iter()
            .any(|value| {
                value
                    .as_bytes()
                    .eq_ignore_ascii_case(ERRORS_BY_STATUS.as_bytes())
            })
}

impl<S, B, R> Service<Request<B>> for EnvelopeStatus<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = EnvelopeStatusFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let in_envelope = reads_envelope_status(&request);
        EnvelopeStatusFuture {
            inner: self.inner.call(request),
            in_envelope,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`EnvelopeStatus`].
    pub(crate) struct EnvelopeStatusFuture<F> {
        #[pin]
        inner: F,
        in_envelope: bool,
    }
}

impl<F, R, E> Future for EnvelopeStatusFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if *this.in_envelope
            && let Ok(response) = &mut result
        {
            *response.status_mut() = StatusCode::OK;
        }
        Poll::Ready(result)
    }
}
