//! The process's FrameX runtime: the registry that `#[on_proxy]` functions and
//! [`crate::call`] consult at call time, and the support code the attribute writes
//! calls to.
//!
//! At most one runtime is installed at a time. With none installed, every
//! `#[on_proxy]` function runs its own body, so plain unit tests of a function work.
//! Looking the runtime up is one atomic load and one hash-map probe: no lock and no
//! allocation on the local path.

use std::any::TypeId;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use framex_registry::{HandlerError, Kwargs, Output, Registry, Target};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

static RUNTIME: ArcSwapOption<Runtime> = ArcSwapOption::const_empty();

struct Runtime {
    registry: Registry,
    /// The routes of the instance this process serves, once it is bound.
    api: Option<framex_server::Api>,
}

/// Keeps an application installed as the process's FrameX runtime; dropping it
/// uninstalls the application.
#[must_use = "the runtime is uninstalled when this guard is dropped"]
pub struct Installed {
    runtime: Arc<Runtime>,
}

impl fmt::Debug for Installed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Installed")
            .field("registry", &self.runtime.registry)
            .finish()
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        // Only this guard's own runtime is taken out.
        let previous = RUNTIME.compare_and_swap(&Some(self.runtime.clone()), None);
        if previous
            .as_ref()
            .is_some_and(|previous| Arc::ptr_eq(previous, &self.runtime))
        {
            routing_changed();
        }
    }
}

/// Counts installs, uninstalls and routing changes, so a call site can tell
/// whether what it remembers about the runtime still holds. 0: nothing was
/// ever installed.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// What one `#[on_proxy]` function remembers between calls: the generation of
/// the runtime it last looked at, shifted left by one, and in the low bit
/// whether that runtime routes the function elsewhere. Starts as "generation 0,
/// local", which holds until a runtime is installed.
#[doc(hidden)]
pub struct CallSite {
    state: AtomicU64,
}

impl CallSite {
    #[doc(hidden)]
    #[allow(clippy::new_without_default)]
    pub const fn new() -> CallSite {
        CallSite {
            state: AtomicU64::new(0),
        }
    }
}

/// Installs `registry` (and the bound instance's `api`) unless another runtime
/// is installed.
pub(crate) fn install(
    registry: Registry,
    api: Option<framex_server::Api>,
) -> Result<Installed, crate::BuildError> {
    let runtime = Arc::new(Runtime { registry, api });
    let previous = RUNTIME.compare_and_swap(&None::<Arc<Runtime>>, Some(runtime.clone()));
    if previous.is_some() {
        return Err(crate::BuildError::AlreadyInstalled);
    }
    routing_changed();
    Ok(Installed { runtime })
}

/// Makes every `#[on_proxy]` call site look up where its function runs again:
/// after a runtime is installed or uninstalled, or the installed registry's
/// routing changed.
pub(crate) fn routing_changed() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Whether a FrameX runtime is installed in this process.
pub fn is_installed() -> bool {
    RUNTIME.load().is_some()
}

/// The installed runtime's registry, if any.
pub(crate) fn installed_registry() -> Option<Registry> {
    RUNTIME
        .load()
        .as_ref()
        .map(|runtime| runtime.registry.clone())
}

/// The installed runtime's route handle, if it serves.
pub(crate) fn installed_api() -> Option<framex_server::Api> {
    RUNTIME
        .load()
        .as_ref()
        .and_then(|runtime| runtime.api.clone())
}

/// A proxy function compiled into this program by `#[on_proxy]`.
#[doc(hidden)]
pub struct ProxyDefinition {
    name: &'static str,
    rust_path: &'static str,
    type_id: fn() -> TypeId,
    handler: fn(Kwargs) -> HandlerFuture,
}

inventory::collect!(ProxyDefinition);

impl ProxyDefinition {
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        rust_path: &'static str,
        type_id: fn() -> TypeId,
        handler: fn(Kwargs) -> HandlerFuture,
    ) -> ProxyDefinition {
        ProxyDefinition {
            name,
            rust_path,
            type_id,
            handler,
        }
    }

    /// The FrameX name of the function.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Its handler: keyword arguments in, the body's result out.
    pub(crate) fn handler(&self) -> framex_registry::Handler {
        let handler = self.handler;
        Arc::new(handler)
    }
}

impl fmt::Debug for ProxyDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyDefinition")
            .field("name", &self.name)
            .field("rust_path", &self.rust_path)
            .finish()
    }
}

/// The definition of the function item of type `F`, if `#[on_proxy]` made it.
pub(crate) fn definition_of<F: 'static>() -> Option<&'static ProxyDefinition> {
    let wanted = TypeId::of::<F>();
    inventory::iter::<ProxyDefinition>
        .into_iter()
        .find(|definition| (definition.type_id)() == wanted)
}

/// The definition named `name`, if `#[on_proxy]` made one.
pub(crate) fn definition_named(name: &str) -> Option<&'static ProxyDefinition> {
    inventory::iter::<ProxyDefinition>
        .into_iter()
        .find(|definition| definition.name == name)
}

/// Every function `#[on_proxy]` compiled into this program, by FrameX name.
pub(crate) fn definitions() -> impl Iterator<Item = &'static ProxyDefinition> {
    inventory::iter::<ProxyDefinition>.into_iter()
}

/// The future of a generated handler.
#[doc(hidden)]
pub type HandlerFuture = framex_registry::BoxFuture<Result<Output, HandlerError>>;

/// A call that configuration sends to a remote instance, decided once.
#[doc(hidden)]
pub struct RemoteCall {
    target: Target<'static>,
}

impl RemoteCall {
    /// Sends the function's `kwargs` (a struct of the parameters) to the
    /// remote the registry routed it to.
    ///
    /// The future is boxed: the generated function holds it only on the remote
    /// path, and an unboxed one would make every local call's future as large
    /// as an HTTP exchange (kilobytes moved on each call).
    pub fn call<K: Serialize>(
        self,
        kwargs: &K,
    ) -> framex_registry::BoxFuture<Result<Output, Error>> {
        // Written straight from the parameters into the bytes that travel.
        let kwargs = match Kwargs::new(kwargs) {
            Ok(kwargs) => kwargs,
            Err(error) => {
                let name = self.target.name();
                let error = Error::Arguments(format!("arguments of `{name}`: {error}"));
                return Box::pin(std::future::ready(Err(error)));
            }
        };
        Box::pin(async move { Ok(self.target.call(kwargs).await?) })
    }
}

pin_project_lite::pin_project! {
    /// The future an `#[on_proxy]` function returns: its body's own future when
    /// it runs here, or the boxed remote call.
    #[doc(hidden)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Proxied<L, R> {
        #[pin]
        state: ProxiedState<L, R>,
    }
}

pin_project_lite::pin_project! {
    #[project = ProxiedProjection]
    enum ProxiedState<L, R> {
        Local {
            #[pin]
            future: L,
        },
        Remote {
            future: framex_registry::BoxFuture<Result<Output, Error>>,
            result: std::marker::PhantomData<fn() -> R>,
        },
    }
}

impl<L, R> Proxied<L, R> {
    #[doc(hidden)]
    pub fn local(future: L) -> Proxied<L, R> {
        Proxied {
            state: ProxiedState::Local { future },
        }
    }

    #[doc(hidden)]
    pub fn remote(future: framex_registry::BoxFuture<Result<Output, Error>>) -> Proxied<L, R> {
        Proxied {
            state: ProxiedState::Remote {
                future,
                result: std::marker::PhantomData,
            },
        }
    }
}

impl<L, R> std::future::Future for Proxied<L, R>
where
    L: std::future::Future<Output = R>,
    R: ProxyReturn,
{
    type Output = R;

    #[inline]
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<R> {
        match self.project().state.project() {
            ProxiedProjection::Local { future } => future.poll(cx),
            ProxiedProjection::Remote { future, .. } => {
                future.as_mut().poll(cx).map(R::from_remote)
            }
        }
    }
}

/// Where a call of `name` goes: `None` runs the body here.
#[doc(hidden)]
#[inline(always)]
pub fn remote(site: &CallSite, name: &'static str) -> Option<RemoteCall> {
    // The fast path: two atomic loads. While the runtime this site last looked
    // at is still the installed one (or none was ever installed) and it runs
    // the function here, nothing else is read.
    let generation = GENERATION.load(Ordering::Acquire);
    let state = site.state.load(Ordering::Acquire);
    if state >> 1 == generation && state & 1 == 0 {
        return None;
    }
    remote_slow(site, name, generation)
}

/// Looks the runtime up and remembers the answer for `site`.
#[cold]
#[inline(never)]
fn remote_slow(site: &CallSite, name: &'static str, generation: u64) -> Option<RemoteCall> {
    let guard = RUNTIME.load();
    // The one routing decision of this call: the target it returns runs it.
    let routed = guard
        .as_ref()
        .map(|runtime| runtime.registry.target(name))
        .filter(|target| target.remote().is_some());
    site.state.store(
        generation << 1 | u64::from(routed.is_some()),
        Ordering::Release,
    );
    routed.map(|target| RemoteCall { target })
}

/// What an `#[on_proxy]` function returns: `Result<T, E>` with a serde `T` and an
/// `E` that can hold a [`framex::Error`](crate::Error) and be displayed.
#[diagnostic::on_unimplemented(
    message = "an #[on_proxy] function must return `Result<T, E>` with `T: Serialize + DeserializeOwned` and `E: From<framex::Error> + Display`, not `{Self}`",
    label = "a call may go to another instance and fail there, so this must be such a `Result`"
)]
pub trait ProxyReturn: Sized {
    #[doc(hidden)]
    fn from_remote(result: Result<Output, Error>) -> Self;
    #[doc(hidden)]
    fn into_handler_result(self) -> Result<Output, HandlerError>;
}

impl<T, E> ProxyReturn for Result<T, E>
where
    T: Serialize + DeserializeOwned,
    E: From<Error> + fmt::Display,
{
    fn from_remote(result: Result<Output, Error>) -> Self {
        // Read straight from the result's bytes into the declared type.
        result?.parse().map_err(|error| {
            E::from(Error::Arguments(format!(
                "the remote result does not have the declared return type: {error}"
            )))
        })
    }

    fn into_handler_result(self) -> Result<Output, HandlerError> {
        match self {
            Ok(value) => Output::new(&value),
            Err(error) => Err(HandlerError::Failed(error.to_string())),
        }
    }
}

/// The type id of a value's type, for function items.
#[doc(hidden)]
pub fn type_id_of<T: 'static>(_: &T) -> TypeId {
    TypeId::of::<T>()
}

/// The length of `module_path` with `::` written as `.`, plus `.` and `function`.
#[doc(hidden)]
pub const fn dotted_name_len(module_path: &str, function: &str) -> usize {
    let path = module_path.as_bytes();
    let mut separators = 0;
    let mut i = 0;
    while i + 1 < path.len() {
        if path[i] == b':' && path[i + 1] == b':' {
            separators += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    path.len() - separators + 1 + function.len()
}

/// `module_path` with `::` written as `.`, then `.` and `function`; `N` is
/// [`dotted_name_len`].
#[doc(hidden)]
pub const fn dotted_name<const N: usize>(module_path: &str, function: &str) -> [u8; N] {
    let path = module_path.as_bytes();
    let function = function.as_bytes();
    let mut out = [0u8; N];
    let (mut i, mut o) = (0, 0);
    while i < path.len() {
        if i + 1 < path.len() && path[i] == b':' && path[i + 1] == b':' {
            out[o] = b'.';
            i += 2;
        } else {
            out[o] = path[i];
            i += 1;
        }
        o += 1;
    }
    out[o] = b'.';
    o += 1;
    let mut j = 0;
    while j < function.len() {
        out[o] = function[j];
        o += 1;
        j += 1;
    }
    out
}

/// The text of bytes built by [`dotted_name`] from two `str`s.
#[doc(hidden)]
pub const fn utf8(bytes: &'static [u8]) -> &'static str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => panic!("a dotted name built from two strings is UTF-8"),
    }
}
