//! The application's own routes: an axum [`Router`], and the OpenAPI
//! description of the routes in it that were added with aide's `api_route`
//! (their parameters, request bodies and responses, derived from the
//! handlers' extractors and return types).

use aide::axum::ApiRouter;
use aide::openapi::OpenApi;
use axum::Router;
use http::Method;
use serde_json::Value;

use crate::forward::{self, OpenApiOperation, Schemas};
use crate::openapi;

/// The routes an application adds to a FrameX instance: axum handlers with
/// axum's extractors, responses, path parameters, per-route layers and
/// streaming bodies, served beside FrameX's own endpoints behind the same
/// stack (the `[auth] rules`, the in-flight limit, logging and tracing).
///
/// Made from an aide [`ApiRouter`], whose `api_route`s are described in the
/// instance's OpenAPI document (which is what another FrameX instance, Rust
/// or Python, reads to forward them), or from a plain axum [`Router`], whose
/// routes are served but not described.
///
/// ```
/// use aide::axum::{ApiRouter, routing::get};
/// use axum::{Json, extract::Query};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Greeting { name: String }
///
/// async fn hello(Query(greeting): Query<Greeting>) -> Json<String> {
///     Json(format!("hello {}", greeting.name))
/// }
///
/// let routes = framex_server::Routes::from(ApiRouter::new().api_route("/api/v1/hello", get(hello)));
/// assert_eq!(routes.documented(), [(http::Method::GET, "/api/v1/hello")]);
/// ```
///
/// aide keeps the schemas of a router being built in a thread-local
/// context, so turn an [`ApiRouter`] into `Routes` on the thread that built
/// it; schemas left behind on another thread are reported when the
/// document is written.
#[derive(Clone, Default)]
pub struct Routes {
    pub(crate) router: Router,
    /// Path, lowercase method and operation object of each documented route.
    pub(crate) operations: Vec<OpenApiOperation>,
    /// The schemas those operations refer to.
    pub(crate) schemas: Schemas,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("documented", &self.documented())
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// No routes.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// The method and path of each documented route, in the document's
    /// order.
    pub fn documented(&self) -> Vec<(Method, &str)> {
        self.operations
            .iter()
            .filter_map(|(path, method, _)| {
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()?;
                Some((method, path.as_str()))
            })
            .collect()
    }

    /// These routes and `other`'s, refused when a path and method would be
    /// served twice, or one of FrameX's own endpoints would be, or a router
    /// has a fallback (the instance's fallback serves forwarded routes).
    pub fn try_merge(self, other: impl Into<Routes>) -> Result<Routes, RouteConflict> {
        let other = other.into();
        let (router, theirs) = (self.router.clone(), other.router.clone());
        let merged = caught(move || router.merge(theirs))?;
        // FrameX's endpoints, with handlers that are never called, to find a
        // clash now rather than when the instance is made.
        let builtins =
            crate::BUILTIN_ROUTES
                .iter()
                .fold(Router::new(), |router, (method, path)| {
                    let filter = axum::routing::MethodFilter::try_from(method.clone())
                        .unwrap_or(axum::routing::MethodFilter::GET);
                    router.route(path, axum::routing::on(filter, || async {}))
                });
        let probe = merged.clone();
        let _probed = caught(move || builtins.fallback(|| async {}).merge(probe))?;
        // Two routers that name different schemas alike keep them apart, as
        // forwarding keeps two upstreams' apart: `other`'s is renamed.
        let renames = forward::schema_renames(&self.schemas, &other.schemas);
        let mut operations = self.operations;
        operations.extend(other.operations.iter().map(|(path, method, operation)| {
            (
                path.clone(),
                method.clone(),
                forward::renamed(operation, &renames),
            )
        }));
        let mut schemas = self.schemas;
        for (name, schema) in &other.schemas {
            let name = renames.get(name).unwrap_or(name);
            schemas
                .entry(name.clone())
                .or_insert_with(|| forward::renamed(schema, &renames));
        }
        Ok(Routes {
            router: merged,
            operations,
            schemas,
        })
    }
}

/// Why routes could not be added: axum's own words for the clash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the application's routes cannot be served: {0}")]
pub struct RouteConflict(String);

/// Runs `merge`, one of axum's router calls that refuse a clash by
/// panicking, with the refusal as an error instead.
fn caught(merge: impl FnOnce() -> Router) -> Result<Router, RouteConflict> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(merge)).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("two routes clash");
        RouteConflict(message.to_owned())
    })
}

impl From<Router> for Routes {
    /// Routes served but not described in the OpenAPI document.
    fn from(router: Router) -> Routes {
        Routes {
            router,
            operations: Vec::new(),
            schemas: Schemas::new(),
        }
    }
}

impl From<ApiRouter> for Routes {
    /// Routes served and, those added with `api_route`, described.
    fn from(router: ApiRouter) -> Routes {
        let mut api = OpenApi::default();
        let router = router.finish_api(&mut api);
        let document = serde_json::to_value(&api).unwrap_or(Value::Null);
        let described = openapi::readable_by_python(&document);
        Routes {
            router,
            operations: described.operations,
            schemas: described.schemas,
        }
    }
}

#[cfg(test)]
mod tests {
    use aide::axum::ApiRouter;
    use aide::axum::routing::post;
    use axum::Json;

    use super::Routes;

    mod first {
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        pub struct Item {
            pub name: String,
        }
    }

    mod second {
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        pub struct Item {
            pub count: u32,
        }
    }

    async fn first(Json(item): Json<first::Item>) -> String {
        item.name
    }

    async fn second(Json(item): Json<second::Item>) -> String {
        item.count.to_string()
    }

    /// Two routers' schemas of one name but different shapes are kept apart,
    /// and each operation refers to its own.
    #[test]
    fn schemas_of_one_name_from_two_routers_are_kept_apart() {
        let a = Routes::from(ApiRouter::new().api_route("/a", post(first)));
        let b = Routes::from(ApiRouter::new().api_route("/b", post(second)));
        let merged = a.try_merge(b).unwrap();
        let reference = |path: &str| {
            let (_, _, operation) = merged
                .operations
                .iter()
                .find(|(p, _, _)| p == path)
                .unwrap();
            operation
                .pointer("/requestBody/content/application~1json/schema/$ref")
                .and_then(|r| r.as_str())
                .unwrap()
                .to_owned()
        };
        assert_eq!(reference("/a"), "#/components/schemas/Item");
        assert_eq!(reference("/b"), "#/components/schemas/Item_2");
        assert!(merged.schemas["Item"]["properties"].get("name").is_some());
        assert!(
            merged.schemas["Item_2"]["properties"]
                .get("count")
                .is_some()
        );
    }
}
