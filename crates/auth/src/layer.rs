//! [`RequireProxyKeyLayer`]: the server side of [`Rules`] as a tower middleware.
//!
//! Every request's path is checked before the inner service sees it; a denied
//! request is answered by the `on_denied` function and never reaches the inner
//! service. The path is decided on percent-decoded, so that no encoding of a
//! protected path (`/api/v1/%76ip` for `/api/v1/vip`) escapes its rule. The
//! middleware does not allocate for an allowed or public request whose path
//! has no percent sign.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::{DenyReason, Rule, Rules};

/// A refused request, handed to the `on_denied` function. It never carries the
/// presented key.
#[derive(Debug, Clone, Copy)]
pub struct Denial<'a> {
    /// The request path.
    pub path: &'a str,
    /// The rule that protects the path.
    pub rule: &'a Rule,
    /// Why the request was refused.
    pub reason: DenyReason,
}

/// Applies proxy-key [`Rules`] to every request; see [`RequireProxyKey`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use framex_auth::{Denial, RequireProxyKeyLayer, Rules};
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// let rules = Rules::new([("/api/v1/proxy/remote", vec!["proxy-key"])])?;
/// let service = ServiceBuilder::new()
///     .layer(RequireProxyKeyLayer::new(rules, |denial: Denial<'_>| {
///         let mut response = Response::new(format!("{}: {}", denial.path, denial.reason));
///         *response.status_mut() = StatusCode::UNAUTHORIZED;
///         response
///     }))
///     .service(service_fn(|_: Request<()>| async {
///         Ok::<_, std::convert::Infallible>(Response::new("called".to_owned()))
///     }));
///
/// let request = Request::post("/api/v1/proxy/remote").body(()).unwrap();
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(response.body(), "/api/v1/proxy/remote: missing Authorization header");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct RequireProxyKeyLayer<D> {
    rules: Arc<Rules>,
    on_denied: D,
}

impl<D> RequireProxyKeyLayer<D> {
    /// Checks requests against `rules`; `on_denied` answers the refused ones.
    pub fn new(rules: Rules, on_denied: D) -> RequireProxyKeyLayer<D> {
        RequireProxyKeyLayer {
            rules: Arc::new(rules),
            on_denied,
        }
    }
}

impl<D> fmt::Debug for RequireProxyKeyLayer<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireProxyKeyLayer")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl<S, D: Clone> Layer<S> for RequireProxyKeyLayer<D> {
    type Service = RequireProxyKey<S, D>;

    fn layer(&self, inner: S) -> RequireProxyKey<S, D> {
        RequireProxyKey {
            inner,
            rules: self.rules.clone(),
            on_denied: self.on_denied.clone(),
        }
    }
}

/// The middleware of [`RequireProxyKeyLayer`]: a request whose path a rule covers
/// reaches `inner` only with one of the rule's keys in its `Authorization`
/// header (raw or `Bearer`).
#[derive(Clone)]
pub struct RequireProxyKey<S, D> {
    inner: S,
    rules: Arc<Rules>,
    on_denied: D,
}

impl<S: fmt::Debug, D> fmt::Debug for RequireProxyKey<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireProxyKey")
            .field("inner", &self.inner)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl<S, D, ReqBody, ResBody> Service<Request<ReqBody>> for RequireProxyKey<S, D>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    D: Fn(Denial<'_>) -> Response<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let raw = request.uri().path();
        // Most paths have nothing to decode.
        let decoded = match raw.contains('%') {
            true => percent_encoding::percent_decode_str(raw).decode_utf8_lossy(),
            false => std::borrow::Cow::Borrowed(raw),
        };
        let path: &str = &decoded;
        match self.rules.check_headers(path, request.headers()) {
            crate::Decision::Denied { rule, reason } => {
                ResponseFuture::denied((self.on_denied)(Denial { path, rule, reason }))
            }
            crate::Decision::Public | crate::Decision::Allowed { .. } => {
                ResponseFuture::inner(self.inner.call(request))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RequireProxyKey`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProjection]
    enum State<F, B> {
        // The request went on to the inner service.
        Inner {
            #[pin]
            future: F,
        },
        // The request was refused; the answer waits here until it is returned.
        Denied {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn inner(future: F) -> ResponseFuture<F, B> {
        ResponseFuture {
            state: State::Inner { future },
        }
    }

    fn denied(response: Response<B>) -> ResponseFuture<F, B> {
        ResponseFuture {
            state: State::Denied {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjection::Inner { future } => future.poll(cx),
            StateProjection::Denied { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after it completed: a contract breach by the caller,
                // answered without panicking.
                None => Poll::Pending,
            },
        }
    }
}
