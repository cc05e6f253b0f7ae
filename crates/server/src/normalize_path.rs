//! The layer that makes every request's path unambiguous before any other
//! layer or route sees it (see [`crate::path`]): the request goes on with its
//! path's canonical encoding, and its decoded text in the request's
//! extensions ([`DecodedPath`]); a path that cannot be made unambiguous is
//! answered by `on_refused` and goes no further.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, Uri};
use tower::{Layer, Service};

use crate::path::{PathError, is_plain, normalize};

/// A request's path, percent-decoded and resolved: what routes and rules
/// decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedPath(pub(crate) String);

/// See the module documentation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NormalizePathLayer<R> {
    on_refused: R,
}

impl<R> NormalizePathLayer<R> {
    pub(crate) fn new(on_refused: R) -> NormalizePathLayer<R> {
        NormalizePathLayer { on_refused }
    }
}

impl<S, R: Clone> Layer<S> for NormalizePathLayer<R> {
    type Service = NormalizePath<S, R>;

    fn layer(&self, inner: S) -> NormalizePath<S, R> {
        NormalizePath {
            inner,
            on_refused: self.on_refused.clone(),
        }
    }
}

/// The service of [`NormalizePathLayer`].
#[derive(Debug, Clone)]
pub(crate) struct NormalizePath<S, R> {
    inner: S,
    on_refused: R,
}

/// Puts the canonical path in `request`, keeping its query, and the decoded
/// path in its extensions; the error when the path is refused.
///
/// A path that is already plain (see [`crate::path::is_plain`]), as most are,
/// is left as it is, and no [`DecodedPath`] is added: its text is its
/// decoded path.
pub(crate) fn normalize_request<B>(request: &mut Request<B>) -> Result<(), PathError> {
    if is_plain(request.uri().path()) {
        return Ok(());
    }
    let normalized = normalize(request.uri().path())?;
    if normalized.encoded() != request.uri().path() {
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{}?{query}", normalized.encoded()),
            None => normalized.encoded().to_owned(),
        };
        let mut parts = request.uri().clone().into_parts();
        // The canonical encoding of a valid path is a valid path.
        parts.path_and_query = path_and_query.parse().ok();
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
        .extensions_mut()
        .insert(DecodedPath(normalized.decoded().to_owned()));
    Ok(())
}

impl<S, R, B, Rb> Service<Request<B>> for NormalizePath<S, R>
where
    S: Service<Request<B>, Response = Response<Rb>>,
    R: Fn(&str, PathError) -> Response<Rb>,
{
    type Response = Response<Rb>;
    type Error = S::Error;
    type Future = NormalizeFuture<S::Future, Rb>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        match normalize_request(&mut request) {
            Ok(()) => NormalizeFuture::Inner {
                future: self.inner.call(request),
            },
            Err(error) => NormalizeFuture::Refused {
                response: Some((self.on_refused)(request.uri().path(), error)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`NormalizePath`].
    #[project = NormalizeProjection]
    pub(crate) enum NormalizeFuture<F, B> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for NormalizeFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            NormalizeProjection::Inner { future } => future.poll(cx),
            NormalizeProjection::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}
