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
pub struct NormalizePathLayer<R> {
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
pub struct NormalizePath<S, R> {
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
    fill_template_parameters(request);
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

/// Puts back the path parameters that Python FrameX sends in the query.
///
/// Python FrameX (framex-kit 0.4.2) forwards a route with a path parameter
/// to the path template itself and sends the parameter's value as a query
/// parameter of the same name: a caller's `GET /api/v1/items/5` arrives as
/// `GET /api/v1/items/%7Bitem_id%7D?item_id=5`. A segment that is exactly
/// `{name}` (a Python identifier) when the query has one `name` gets that
/// value as its text, and the query loses the pair; the path then goes
/// through the same checks as any other, so a value with a `/` in it is
/// refused as ambiguous. The caller could have sent the filled path itself,
/// so nothing is reached this way that was not reachable.
fn fill_template_parameters<B>(request: &mut Request<B>) {
    let uri = request.uri();
    let (path, Some(query)) = (uri.path(), uri.query()) else {
        return;
    };
    // One pass over the path for the common case of no template in it.
    if !path.bytes().any(|byte| byte == b'{' || byte == b'%')
        || !(path.contains('{') || path.contains("%7B") || path.contains("%7b"))
    {
        return;
    }
    // The value's bytes as the query carries them (form encoding: `+` is a
    // space), so that bytes that are not UTF-8 reach the path as they came,
    // and are refused or read there as in any path, never replaced.
    let single_value = |name: &str| {
        let mut values = query.split('&').filter_map(|pair| {
            let (key, value) = query_pair(pair);
            (key? == name).then_some(value)
        });
        match (values.next(), values.next()) {
            (Some(value), None) => {
                let spaced = value.replace('+', " ");
                Some(percent_encoding::percent_decode_str(&spaced).collect::<Vec<u8>>())
            }
            _ => None,
        }
    };
    let mut filled: Vec<String> = Vec::new();
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| {
            let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
            let name = decoded
                .strip_prefix('{')
                .and_then(|rest| rest.strip_suffix('}'))
                .filter(|name| is_identifier(name));
            match name.and_then(|name| Some((name, single_value(name)?))) {
                Some((name, value)) if !filled.iter().any(|done| done == name) => {
                    filled.push(name.to_owned());
                    percent_encoding::percent_encode(&value, SEGMENT_VALUE).to_string()
                }
                _ => segment.to_owned(),
            }
        })
        .collect();
    if filled.is_empty() {
        return;
    }
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (key, _) = query_pair(pair);
            !key.is_some_and(|key| filled.iter().any(|name| *name == key))
        })
        .collect();
    let mut path_and_query = segments.join("/");
    if !rest.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&rest.join("&"));
    }
    let mut parts = uri.clone().into_parts();
    let Ok(path_and_query) = path_and_query.parse() else {
        return;
    };
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

/// A query's `key=value` pair: its key decoded (`None` when empty), its value
/// as it came.
fn query_pair(pair: &str) -> (Option<std::borrow::Cow<'_, str>>, &str) {
    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
    let key = form_urlencoded::parse(key.as_bytes())
        .next()
        .map(|(key, _)| key);
    (key, value)
}

/// Whether `name` is an identifier as Python and OpenAPI templates write
/// them: an ASCII letter or `_`, then letters, digits and `_`.
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// What a value put into a path segment keeps as it is: letters, digits and
/// `-._~`; everything else is percent-encoded.
const SEGMENT_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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
    /// The answer of [`NormalizePath`]: the inner service's, or one given
    /// at once (also the answer of the body limit of application routes).
    #[project = NormalizeProjection]
    pub enum NormalizeFuture<F, B> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(uri: &str) -> String {
        let mut request = Request::get(uri).body(()).unwrap();
        fill_template_parameters(&mut request);
        request.uri().to_string()
    }

    #[test]
    fn a_path_parameter_sent_in_the_query_goes_back_into_the_path() {
        assert_eq!(
            filled("/api/v1/items/%7Bitem_id%7D?item_id=5"),
            "/api/v1/items/5"
        );
        assert_eq!(
            filled("/api/v1/items/%7Bitem_id%7D/parts/%7Bpart%7D?part=a+b&q=1&item_id=%C3%BC"),
            "/api/v1/items/%C3%BC/parts/a%20b?q=1"
        );
    }

    #[test]
    fn a_value_that_is_not_utf8_reaches_the_path_as_it_came() {
        assert_eq!(filled("/a/%7Bid%7D?id=%FF%20x"), "/a/%FF%20x");
    }

    #[test]
    fn anything_else_is_left_as_it_came() {
        for uri in [
            "/api/v1/items/%7Bitem_id%7D",
            "/api/v1/items/%7Bitem_id%7D?other=1",
            "/api/v1/items/%7Bitem_id%7D?item_id=1&item_id=2",
            "/api/v1/items/%7B1x%7D?1x=1",
            "/api/v1/items/5?item_id=5",
        ] {
            assert_eq!(filled(uri), uri);
        }
    }

    #[test]
    fn a_value_with_a_slash_is_refused_by_the_checks_that_follow() {
        let mut request = Request::get("/api/v1/items/%7Bid%7D?id=a%2F..%2Fadmin")
            .body(())
            .unwrap();
        assert!(normalize_request(&mut request).is_err());
    }
}
