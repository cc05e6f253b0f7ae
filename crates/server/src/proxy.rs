//! `POST /api/v1/proxy/remote`: decode a call, run it here or relay it to the
//! instance that configuration names, and answer in the FrameX envelope.

use bytes::Bytes;
use framex_registry::{CallError, Kwargs, Target};
use std::time::Instant;

use framex_transport::json;
use framex_transport::trace::TraceContext;
use framex_transport::wire::{self, CallBody, Envelope, WireError};
use framex_transport::{ErrorKind, deadline};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tracing::Instrument as _;

use crate::{State, envelope_json, envelope_response, read_body};

/// Answers a call of the proxy endpoint. Takes the request's parts apart
/// before the first await, so that the future holds the body alone (the whole
/// request would make it, and every future that wraps it, larger).
pub(crate) fn handle(
    state: &State,
    request: Request<axum::body::Body>,
) -> impl Future<Output = Response<Full<Bytes>>> + Send + '_ {
    let headers = request.headers();
    let hops = crate::hops(headers);
    let deadline = headers
        .get(deadline::TIMEOUT_HEADER)
        .map(|value| deadline::parse(value, Instant::now()))
        .transpose();
    // A caller that fails over: a FrameX for Rust client.
    let moves_on = headers.contains_key(framex_transport::ERRORS_HEADER);
    let draining = state.drain.draining();
    let body = request.into_body();
    async move {
        if draining && moves_on {
            return draining_answer(&state.settings.instance_name);
        }
        let deadline = match deadline {
            Ok(deadline) => deadline,
            Err(message) => return envelope_response(StatusCode::BAD_REQUEST, &message),
        };
        // No timer of its own: a local handler is stopped at the deadline
        // (`run_local`), a relayed call ends by it (the client reads the
        // scope's deadline), and reading the body has its own timeout.
        let mut response = match deadline {
            None => serve(state, hops, body, None).await,
            Some(deadline) => {
                deadline::scope(deadline, serve(state, hops, body, Some(deadline))).await
            }
        };
        if draining {
            // The caller's next call goes elsewhere.
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// 503 to a caller that moves on: this instance is shutting down, and the
/// call did not run.
fn draining_answer(instance: &str) -> Response<Full<Bytes>> {
    let mut response = crate::retry_later(&format!(
        "instance `{instance}` is shutting down; the call did not run here"
    ));
    let headers = response.headers_mut();
    headers.insert(
        const { http::HeaderName::from_static(framex_transport::DRAINING_HEADER) },
        http::HeaderValue::from_static("1"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// 504: the caller's deadline passed (`why`); the caller no longer waits.
/// Marked with a zero [`deadline::TIMEOUT_HEADER`], so that a FrameX for Rust
/// caller reports its own timeout, whichever of the two ends first.
fn past_deadline(why: &str) -> Response<Full<Bytes>> {
    let mut response = envelope_response(StatusCode::GATEWAY_TIMEOUT, why);
    response.headers_mut().insert(
        const { http::HeaderName::from_static(deadline::TIMEOUT_HEADER) },
        http::HeaderValue::from_static("0"),
    );
    response
}

async fn serve(
    state: &State,
    hops: Result<u32, String>,
    body: axum::body::Body,
    deadline: Option<Instant>,
) -> Response<Full<Bytes>> {
    let hops = match hops {
        Ok(hops) => hops,
        Err(message) => return envelope_response(StatusCode::BAD_REQUEST, &message),
    };
    if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
        return past_deadline("the call arrived after its caller's deadline; it did not run");
    }
    let body = match read_body(body, &state.settings).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let call: CallFields<'_> = match json::from_slice(&body) {
        Ok(call) => call,
        Err(error) => {
            return envelope_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "body must be a JSON object with string fields `func_name` and `data`: {error}"
                ),
            );
        }
    };
    let limit = state.settings.max_inflated_bytes;
    let name = match function_name(&call.func_name) {
        Ok(name) => name,
        Err((status, message)) => return envelope_response(status, &message),
    };
    // The one routing decision of this call here.
    let target = state.registry.target(&name);
    if target.remote().is_some() {
        // Boxed: its future holds a whole outgoing call, kilobytes that every
        // layer of the server's stack would otherwise move on every request.
        // The arguments go on as they came, not decoded.
        let call = CallBody {
            func_name: call.func_name.into_owned(),
            data: call.data.into_owned(),
        };
        drop(body);
        return Box::pin(relay(state, &target, call, hops)).await;
    }
    if target.is_unknown() {
        // Refused without reading the arguments, and counted as such. Boxed:
        // a call's future is large, and this rare one would grow every
        // request's.
        let result = Box::pin(target.call(Kwargs::empty())).await;
        return answer(&name, result, state.settings.compression);
    }
    // Decoded to their JSON text only: the function reads each argument from
    // it into its parameter's type.
    let kwargs = match wire::decode_json(&call.data, limit) {
        Ok(kwargs) => kwargs,
        Err(error) => return undecodable("data", &error),
    };
    // The body is no longer needed: only the arguments' text is kept.
    drop(call);
    drop(body);
    // What reading the arguments may take, bounded per call and, with their
    // text and the calls in flight, in all. (Inflating is synchronous, so at
    // most one text per worker thread exists before it is reserved for.)
    let memory = (kwargs.len().saturating_mul(ARGUMENT_MEMORY_MULTIPLE))
        .max(MIN_ARGUMENT_MEMORY)
        .min(state.settings.max_argument_memory);
    let reserved_bytes = memory
        .saturating_add(kwargs.len())
        .min(state.settings.max_argument_memory);
    let permits = u32::try_from(reserved_bytes / 1024).unwrap_or(u32::MAX);
    let Ok(reserved) = state
        .argument_memory
        .clone()
        .try_acquire_many_owned(permits)
    else {
        tracing::warn!(
            function = name,
            memory = reserved_bytes,
            limit = state.settings.max_argument_memory,
            "call refused: the arguments of the calls in flight may take all the memory allowed"
        );
        return crate::retry_later(&format!(
            "the arguments of the calls in flight here may take up to {} bytes together, this instance's limit (server.max_argument_memory); retry later",
            state.settings.max_argument_memory
        ));
    };
    let kwargs = Kwargs::from_json(kwargs).limit_memory(memory);
    if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
        return past_deadline(&format!(
            "the caller's deadline passed before `{name}` could run; it did not run"
        ));
    }
    let compression = state.settings.compression;
    run_local(&name, target, kwargs, reserved, deadline, compression).await
}

/// The fields of a call's body, read where they are in it: base64 has nothing
/// to unescape, so neither is copied (a field written with escapes is, as
/// any JSON string may be).
#[derive(serde::Deserialize)]
struct CallFields<'body> {
    #[serde(borrow)]
    func_name: std::borrow::Cow<'body, str>,
    #[serde(borrow)]
    data: std::borrow::Cow<'body, str>,
}

/// The function name of a call: refused before any lookup when it is longer
/// than `wire::MAX_FUNCTION_NAME_BYTES`, with a message that quotes only its
/// beginning. Its payload is inflated no further than such a name could take
/// (every character escaped as `\uXXXX`).
fn function_name(encoded: &str) -> Result<String, (StatusCode, String)> {
    const MAX: usize = wire::MAX_FUNCTION_NAME_BYTES;
    let too_long = |what: &str| {
        (
            StatusCode::BAD_REQUEST,
            format!("the function name is longer than {MAX} bytes: {what}"),
        )
    };
    let name: String = match wire::decode_with_limit(encoded, MAX * 6 + 2) {
        Ok(name) => name,
        Err(WireError::TooLarge { .. }) => return Err(too_long("its encoding alone is longer")),
        Err(error) => return Err(undecodable_status("func_name", &error)),
    };
    if name.len() > MAX {
        let prefix: String = name.chars().take(32).collect();
        return Err(too_long(&format!("`{prefix}…` ({} bytes)", name.len())));
    }
    Ok(name)
}

/// What reading a call's arguments may take, at most, per byte of their JSON:
/// JSON as dense as `[0,0,0,…]` holds a value every two bytes, and a value
/// may take 96 (see `framex_json::from_slice_limited`), so such arguments are
/// refused at about a third of the size of arguments with values of typical
/// length.
const ARGUMENT_MEMORY_MULTIPLE: usize = 16;
/// What reading a call's arguments may take however small they are.
const MIN_ARGUMENT_MEMORY: usize = 1024 * 1024;

fn undecodable(field: &str, error: &WireError) -> Response<Full<Bytes>> {
    let (status, message) = undecodable_status(field, error);
    envelope_response(status, &message)
}

/// The status and message of a call whose `field` does not decode.
fn undecodable_status(field: &str, error: &WireError) -> (StatusCode, String) {
    let status = match error {
        WireError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let cause = std::error::Error::source(error)
        .map(|source| format!(": {source}"))
        .unwrap_or_default();
    (
        status,
        format!("field `{field}` does not decode: {error}{cause}"),
    )
}

/// Runs the local handler on the request's own task (spawning none: a task
/// per call cost a task's allocation, a hand-off through the scheduler and,
/// often, a wake of another worker thread); a panic in it answers 500 and
/// leaves the server and other calls alone. A call whose caller hangs up goes
/// on in a task of its own ([`InPlace`]), as far as its deadline lets it.
async fn run_local(
    name: &str,
    target: Target<'_>,
    kwargs: Kwargs,
    reserved: tokio::sync::OwnedSemaphorePermit,
    deadline: Option<Instant>,
    compression: wire::Compression,
) -> Response<Full<Bytes>> {
    // The call owns its copy of the name, so that it can go on alone; this
    // one answers if it panics.
    let target = target.into_owned();
    // In place, the call runs in the request's log span, trace and deadline
    // scopes already; alone, it is given them again (`InPlace`'s drop).
    let call = async move {
        let result = target.call(kwargs).await;
        // The arguments are gone with the call: their memory is free again.
        drop(reserved);
        result
    };
    // With a deadline the call stops itself there: it never outlives it,
    // also when the caller hangs up first and it goes on alone.
    let ended = match deadline {
        // The handler reads its deadline (`framex_transport::deadline`), and
        // the calls it makes end by then.
        Some(deadline) => {
            InPlace::new(async move { tokio::time::timeout_at(deadline.into(), call).await.ok() })
                .await
        }
        None => InPlace::new(async move { Some(call.await) }).await,
    };
    match ended {
        Ok(Some(result)) => answer(name, result, compression),
        Ok(None) => {
            tracing::warn!(
                function = name,
                "proxy function stopped at its caller's deadline"
            );
            past_deadline(&format!(
                "`{name}` did not finish by its caller's deadline and was stopped"
            ))
        }
        Err(Panicked) => {
            tracing::error!(function = name, "proxy function panicked");
            envelope_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("proxy function `{name}` panicked"),
            )
        }
    }
}

/// A call that panicked while it was polled.
struct Panicked;

/// A handler's call, polled by the task that awaits it. Dropped before it
/// ends (its caller hung up, and the request's future went with it), the
/// call goes on in a task of its own: nobody waits for its answer any more,
/// but a handler is not cut off half way through what it does at one of its
/// awaits. A panic while it is polled ends it with [`Panicked`].
///
/// `tokio::spawn` gives the same two properties, at the cost of a task for
/// every call, which is what this avoids for the calls that end while their
/// caller waits, nearly all of them.
struct InPlace<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// `None` once the call ended (or panicked).
    call: Option<std::pin::Pin<Box<F>>>,
}

impl<F> InPlace<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn new(call: F) -> InPlace<F> {
        InPlace {
            call: Some(Box::pin(call)),
        }
    }
}

impl<F> Future for InPlace<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, Panicked>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        // Never polled again once it answered: such a poll waits forever, as
        // nothing is left to wake it.
        let Some(call) = self.call.as_mut() else {
            return Poll::Pending;
        };
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call.as_mut().poll(cx)));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                self.call = None;
                Poll::Ready(Ok(output))
            }
            Err(_) => {
                // What the call held is dropped with it, now.
                self.call = None;
                Poll::Ready(Err(Panicked))
            }
        }
    }
}

impl<F> Drop for InPlace<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        // Outside a runtime (one shutting down drops its tasks outside its
        // context) there is nowhere for it to go on: it ends here.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The request's future is being dropped, and the scopes it set are
        // set while it is (`tracing::Instrumented` and Tokio's task-locals
        // drop what they wrap inside them): the call takes its log span, its
        // trace and its deadline along.
        let call = call.instrument(tracing::Span::current());
        let call = TraceContext::current()
            .unwrap_or_else(TraceContext::new_root)
            .scope(call);
        drop(match deadline::current() {
            Some(deadline) => runtime.spawn(async move {
                deadline::scope(deadline, call).await;
            }),
            None => runtime.spawn(async move {
                call.await;
            }),
        });
    }
}

/// The answer to a call of `name` that ran here (or was refused here), its
/// result compressed as `compression` says.
fn answer(
    name: &str,
    result: Result<framex_registry::Output, CallError>,
    compression: wire::Compression,
) -> Response<Full<Bytes>> {
    match result {
        Ok(output) => crate::json_bytes(
            StatusCode::OK,
            wire::success_body(output.as_json(), compression),
        )
        .map(Full::new),
        Err(CallError::NotRegistered(name)) => {
            envelope_response(StatusCode::NOT_FOUND, &wire::not_registered_message(&name))
        }
        Err(error @ CallError::Arguments { .. }) => {
            envelope_response(StatusCode::UNPROCESSABLE_ENTITY, &error.to_string())
        }
        Err(error @ CallError::TooLarge { .. }) => {
            tracing::warn!(function = name, %error, "call refused");
            envelope_response(StatusCode::PAYLOAD_TOO_LARGE, &error.to_string())
        }
        Err(CallError::Failed { message, .. }) => {
            tracing::warn!(function = name, message, "proxy function failed");
            envelope_response(StatusCode::INTERNAL_SERVER_ERROR, &message)
        }
        Err(other) => envelope_response(StatusCode::INTERNAL_SERVER_ERROR, &other.to_string()),
    }
}

/// Passes a call on to the instance that configuration names, body unchanged.
async fn relay(
    state: &State,
    target: &Target<'_>,
    call: CallBody,
    hops: u32,
) -> Response<Full<Bytes>> {
    let name = target.name();
    let next = hops.saturating_add(1);
    if next > state.settings.max_hops {
        return envelope_response(
            StatusCode::LOOP_DETECTED,
            &format!(
                "call to `{name}` passed through {hops} FrameX instances (limit {}); check `proxy_functions` for a loop",
                state.settings.max_hops
            ),
        );
    }
    let result = target.relay(call, next).await;
    match result {
        Ok(data) => envelope_json(
            StatusCode::OK,
            &Envelope {
                data: Some(data),
                ..Envelope::success(String::new())
            },
        ),
        // The caller's own deadline, not this instance's timeout, ended it.
        Err(CallError::Remote(error))
            if error.is_timeout() && deadline::remaining().is_some_and(|left| left.is_zero()) =>
        {
            past_deadline(&format!(
                "the call of `{name}` relayed to {} did not end by its caller's deadline",
                error.url()
            ))
        }
        Err(CallError::Remote(error)) => {
            tracing::warn!(function = name, url = error.url(), %error, "relaying a call failed");
            let status = match error.kind() {
                ErrorKind::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::NotRegistered => StatusCode::NOT_FOUND,
                ErrorKind::Remote { status, .. }
                    if *status == StatusCode::LOOP_DETECTED.as_u16() =>
                {
                    StatusCode::LOOP_DETECTED
                }
                _ => StatusCode::BAD_GATEWAY,
            };
            let message = match error.kind() {
                ErrorKind::NotRegistered => wire::not_registered_message(name),
                _ => error.to_string(),
            };
            envelope_response(status, &message)
        }
        Err(error) => envelope_response(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
}
