//! The instance's OpenAPI document (`GET /api/v1/openapi.json`): `/health`,
//! the application's documented routes and the forwarded ones, with their
//! schemas; and the form the application's routes are written in, which is
//! the one Python FrameX reads.
//!
//! Python FrameX (framex-kit 0.4.2) forwards a route from an upstream's
//! document by reading, for each operation, its `operationId` (required; it
//! names the forwarding function), each parameter's `schema.type` (a single
//! JSON type, or the parameter is dropped), and a JSON request body's
//! `schema.$ref` into `components.schemas`, whose properties must each be a
//! `$ref`, an `anyOf`, or a single `type`. Anything else (a type array as
//! JSON Schema writes `Option<T>`, a `oneOf`, an `allOf`, a boolean schema,
//! an inline body schema, a path item field that is not a method) makes it
//! fail to load the whole document. aide writes the first five, so the
//! application's routes are rewritten here into that form: the same
//! values, described in the subset Python FrameX understands. Forwarded
//! routes are written as their upstream published them.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::forward::{self, ForwardedOpenApi, SCHEMAS_PREFIX};

/// The JSON types, as a schema that takes any value, in the `anyOf` form
/// Python FrameX reads (integers before numbers, so that `1` stays `1`).
fn any_value() -> Value {
    json!({"anyOf": [
        {"type": "object"}, {"type": "array"}, {"type": "string"}, {"type": "integer"},
        {"type": "number"}, {"type": "boolean"}, {"type": "null"},
    ]})
}

/// Operations (path, lowercase method, operation object) and schemas of an
/// aide-written `document`, rewritten into the form the module
/// documentation describes.
pub(crate) fn readable_by_python(document: &Value) -> ForwardedOpenApi {
    let mut schemas: BTreeMap<String, Value> = document
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, schema)| (name.clone(), plain_schema(schema)))
        .collect();
    let mut operations = Vec::new();
    let mut ids = HashSet::new();
    let paths = document.get("paths").and_then(Value::as_object);
    for (path, item) in paths.into_iter().flatten() {
        let template = openapi_template(path);
        let shared: Vec<Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (method, operation) in item.as_object().into_iter().flatten() {
            if !forward::is_method_key(method) {
                continue;
            }
            let mut operation = operation.as_object().cloned().unwrap_or_default();
            let id = unique_operation_id(&operation, method, &template, &mut ids);
            operation.insert("operationId".to_owned(), Value::String(id.clone()));
            let parameters = parameters(&operation, &shared, &template, &schemas);
            operation.insert("parameters".to_owned(), Value::Array(parameters));
            if let Some(body) = operation.get_mut("requestBody") {
                body_by_reference(body, &id, &mut schemas);
            }
            operation
                .entry("responses")
                .or_insert_with(|| json!({"200": {"description": "success"}}));
            operations.push((
                template.clone(),
                method.clone(),
                Arc::new(Value::Object(operation)),
            ));
        }
    }
    ForwardedOpenApi {
        operations,
        schemas: schemas
            .into_iter()
            .map(|(name, schema)| (name, Arc::new(schema)))
            .collect(),
    }
}

/// An axum path as an OpenAPI template: a wildcard `{*rest}` is `{rest}`.
fn openapi_template(path: &str) -> String {
    path.replace("{*", "{")
}

/// The names of the parameters of `template` (`{job_id}`).
fn template_parameters(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

/// The operation's `operationId`, else one made of its method and path
/// (`get_api_v1_report`), made unique in the document: Python FrameX names
/// the function that forwards it after it, and two alike would share one.
fn unique_operation_id(
    operation: &Map<String, Value>,
    method: &str,
    template: &str,
    ids: &mut HashSet<String>,
) -> String {
    let base = match operation.get("operationId").and_then(Value::as_str) {
        Some(id) => id.to_owned(),
        None => {
            let words: String = template
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let words: Vec<&str> = words.split('_').filter(|w| !w.is_empty()).collect();
            format!("{method}_{}", words.join("_"))
        }
    };
    let mut id = base.clone();
    let mut n = 2;
    while !ids.insert(id.clone()) {
        id = format!("{base}_{n}");
        n += 1;
    }
    id
}

/// The operation's parameters: the path item's and its own, each with a
/// single `schema.type`, and one per template parameter that no extractor
/// described (a `Path<String>`), as a required string.
fn parameters(
    operation: &Map<String, Value>,
    shared: &[Value],
    template: &str,
    schemas: &BTreeMap<String, Value>,
) -> Vec<Value> {
    let own = operation.get("parameters").and_then(Value::as_array);
    let mut parameters: Vec<Value> = shared
        .iter()
        .chain(own.into_iter().flatten())
        .map(|parameter| {
            let mut parameter = parameter.clone();
            if let Some(object) = parameter.as_object_mut() {
                let schema = object.get("schema").cloned().unwrap_or(Value::Null);
                object.insert("schema".to_owned(), single_type(&schema, schemas));
                if object.get("in").and_then(Value::as_str) == Some("path") {
                    object.insert("required".to_owned(), Value::Bool(true));
                }
            }
            parameter
        })
        .collect();
    for name in template_parameters(template) {
        let described = parameters.iter().any(|p| {
            p.get("name").and_then(Value::as_str) == Some(name)
                && p.get("in").and_then(Value::as_str) == Some("path")
        });
        if !described {
            parameters.push(json!({
                "name": name, "in": "path", "required": true, "schema": {"type": "string"},
            }));
        }
    }
    parameters
}

/// A parameter's schema with one `type`: a reference resolved, the null of
/// an optional one dropped (the parameter's `required` says it may be
/// absent), anything else a string, which is what a query or path value is.
fn single_type(schema: &Value, schemas: &BTreeMap<String, Value>) -> Value {
    let resolved = match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix(SCHEMAS_PREFIX))
        .and_then(|name| schemas.get(name))
    {
        Some(target) => target.clone(),
        None => plain_schema(schema),
    };
    let Value::Object(mut object) = resolved else {
        return json!({"type": "string"});
    };
    if object.get("type").and_then(Value::as_str).is_some() {
        return Value::Object(object);
    }
    let typed = object
        .get("anyOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|option| {
            option
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t != "null")
        })
        .cloned();
    match typed {
        Some(Value::Object(option)) => {
            object.remove("anyOf");
            object.extend(option);
        }
        _ => {
            object.remove("anyOf");
            object.insert("type".to_owned(), Value::String("string".to_owned()));
        }
    }
    Value::Object(object)
}

/// Makes a JSON request body's schema a reference into `schemas`, moving an
/// inline one there as `{operation id}_body`.
fn body_by_reference(body: &mut Value, id: &str, schemas: &mut BTreeMap<String, Value>) {
    let Some(schema) = body.pointer_mut("/content/application~1json/schema") else {
        return;
    };
    if schema.get("$ref").is_some() {
        return;
    }
    let mut name = format!("{id}_body");
    while schemas.contains_key(&name) {
        name.push('_');
    }
    let inline = plain_schema(schema);
    let inline = match inline.get("type").and_then(Value::as_str) {
        Some("object") => inline,
        // Python FrameX builds a model of the properties of a body's schema,
        // so a body that is not an object is described as one that takes
        // anything rather than as an object with no fields.
        _ => json!({"type": "object", "additionalProperties": true}),
    };
    schemas.insert(name.clone(), inline);
    *schema = json!({"$ref": format!("{SCHEMAS_PREFIX}{name}")});
}

/// `schema`, and every schema in it, in the form the module documentation
/// describes: a type array as an `anyOf` of single types, a `oneOf` or a
/// several-part `allOf` as an `anyOf`, a one-part `allOf` as its part, and
/// a schema that says nothing of its type as one of any type.
pub(crate) fn plain_schema(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        // `true` (anything) or `false` (nothing): Python FrameX reads neither.
        return any_value();
    };
    let mut object: Map<String, Value> = object
        .iter()
        .map(|(key, value)| (key.clone(), plain_member(key, value)))
        .collect();
    if let Some(Value::Array(parts)) = object.remove("allOf") {
        match <[Value; 1]>::try_from(parts) {
            Ok([Value::Object(part)]) => {
                for (key, value) in part {
                    object.entry(key).or_insert(value);
                }
            }
            Ok([part]) => {
                object.insert("anyOf".to_owned(), Value::Array(vec![part]));
            }
            Err(parts) => {
                object.insert("anyOf".to_owned(), Value::Array(parts));
            }
        }
    }
    if let Some(options) = object.remove("oneOf") {
        object.insert("anyOf".to_owned(), options);
    }
    if let Some(Value::Array(types)) = object.get("type").cloned() {
        object.remove("type");
        // What describes the value goes with each type but null; what
        // describes the schema stays.
        let described: Map<String, Value> = object
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "title" | "description" | "default"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        object.retain(|key, _| matches!(key.as_str(), "title" | "description" | "default"));
        let options = types
            .into_iter()
            .map(|t| match t.as_str() {
                Some("null") => json!({"type": "null"}),
                _ => {
                    let mut option = described.clone();
                    option.insert("type".to_owned(), t);
                    Value::Object(option)
                }
            })
            .collect();
        object.insert("anyOf".to_owned(), Value::Array(options));
    }
    let typed = ["$ref", "anyOf", "type"]
        .iter()
        .any(|key| object.contains_key(*key));
    if !typed && let Value::Object(any) = any_value() {
        object.extend(any);
    }
    Value::Object(object)
}

/// A member of a schema with the schemas in it made plain.
fn plain_member(key: &str, value: &Value) -> Value {
    match (key, value) {
        ("properties" | "patternProperties" | "$defs" | "definitions", Value::Object(map)) => {
            Value::Object(
                map.iter()
                    .map(|(name, schema)| (name.clone(), plain_schema(schema)))
                    .collect(),
            )
        }
        ("items" | "additionalProperties" | "not" | "contains", Value::Object(_)) => {
            plain_schema(value)
        }
        ("anyOf" | "oneOf" | "allOf" | "prefixItems", Value::Array(items)) => {
            Value::Array(items.iter().map(plain_schema).collect())
        }
        _ => value.clone(),
    }
}

/// Names `$ref` points at that `schemas` lacks, to be reported: a schema
/// aide kept on another thread than the one its router was finished on.
pub(crate) fn missing_schemas<'a>(
    operations: impl Iterator<Item = &'a Value>,
    schemas: &forward::Schemas,
) -> Vec<String> {
    let mut refs = Vec::new();
    for operation in operations {
        forward::schema_refs(operation, &mut refs);
    }
    for schema in schemas.values() {
        forward::schema_refs(schema, &mut refs);
    }
    let mut missing: Vec<String> = refs
        .into_iter()
        .filter(|name| !schemas.contains_key(*name))
        .map(str::to_owned)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

/// The instance's document: `/health`, then every operation of `forwarded`
/// (which holds the application's documented routes first, then the
/// forwarded ones) with the schemas they share. Written straight from the
/// `Arc`s the forwarding table holds rather than through a `Value` of its
/// own, which would copy every operation and schema (several times their
/// JSON in memory, for a document of up to 32 MiB).
pub(crate) fn document<'a>(title: &'a str, forwarded: &'a ForwardedOpenApi) -> Document<'a> {
    let mut paths: Paths<'a> = BTreeMap::new();
    paths.entry(crate::HEALTH_PATH).or_default().insert(
        "get",
        Cow::Owned(json!({
            "operationId": "health",
            "responses": {"200": {"description": "the instance is up"}},
        })),
    );
    for (path, method, operation) in &forwarded.operations {
        paths
            .entry(path)
            .or_default()
            .insert(method, Cow::Borrowed(&**operation));
    }
    Document {
        openapi: "3.1.0",
        info: Info {
            title,
            version: env!("CARGO_PKG_VERSION"),
        },
        paths,
        components: (!forwarded.schemas.is_empty()).then_some(Components {
            schemas: SharedSchemas(&forwarded.schemas),
        }),
    }
}

/// Paths, then lowercase methods, to operation objects, in order.
type Paths<'a> = BTreeMap<&'a str, BTreeMap<&'a str, Cow<'a, Value>>>;

#[derive(serde::Serialize)]
pub(crate) struct Document<'a> {
    openapi: &'static str,
    info: Info<'a>,
    paths: Paths<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    components: Option<Components<'a>>,
}

#[derive(serde::Serialize)]
struct Info<'a> {
    title: &'a str,
    version: &'static str,
}

#[derive(serde::Serialize)]
struct Components<'a> {
    schemas: SharedSchemas<'a>,
}

/// The merged schemas, written without copying them out of their `Arc`s.
struct SharedSchemas<'a>(&'a forward::Schemas);

impl serde::Serialize for SharedSchemas<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, schema)| (name, &**schema)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_value_is_an_any_of_with_null() {
        let schema = json!({"type": ["integer", "null"], "format": "int64", "description": "d"});
        assert_eq!(
            plain_schema(&schema),
            json!({"description": "d", "anyOf": [{"type": "integer", "format": "int64"}, {"type": "null"}]})
        );
    }

    #[test]
    fn nested_schemas_are_made_plain_and_untyped_ones_take_anything() {
        let schema = json!({
            "type": "object",
            "properties": {
                "tags": {"type": "array", "items": {"type": ["string", "null"]}},
                "extra": true,
                "kind": {"oneOf": [{"const": "a"}, {"const": "b"}]},
                "inner": {"allOf": [{"$ref": "#/components/schemas/Inner"}], "description": "x"},
            },
        });
        let plain = plain_schema(&schema);
        assert_eq!(
            plain["properties"]["tags"]["items"],
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]})
        );
        assert_eq!(plain["properties"]["extra"], any_value());
        assert_eq!(plain["properties"]["kind"]["anyOf"][0]["const"], "a");
        assert_eq!(
            plain["properties"]["inner"],
            json!({"$ref": "#/components/schemas/Inner", "description": "x"})
        );
    }

    #[test]
    fn operations_get_ids_path_parameters_single_types_and_referenced_bodies() {
        let document = json!({
            "paths": {
                "/api/v1/items/{id}": {
                    "get": {"parameters": [
                        {"name": "q", "in": "query", "required": false, "schema": {"type": ["string", "null"]}},
                        {"name": "kind", "in": "query", "required": true, "schema": {"$ref": "#/components/schemas/Kind"}},
                    ]},
                    "post": {"requestBody": {"content": {"application/json": {"schema": {"type": "array"}}}}},
                },
            },
            "components": {"schemas": {"Kind": {"type": "string", "enum": ["a", "b"]}}},
        });
        let ForwardedOpenApi {
            operations,
            schemas,
        } = readable_by_python(&document);
        let (path, method, get) = &operations[0];
        assert_eq!(
            (path.as_str(), method.as_str()),
            ("/api/v1/items/{id}", "get")
        );
        assert_eq!(get["operationId"], "get_api_v1_items_id");
        assert_eq!(get["parameters"][0]["schema"], json!({"type": "string"}));
        assert_eq!(
            get["parameters"][1]["schema"],
            json!({"type": "string", "enum": ["a", "b"]})
        );
        assert_eq!(
            get["parameters"][2],
            json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}})
        );
        let post = &operations[1].2;
        let reference = post.pointer("/requestBody/content/application~1json/schema/$ref");
        assert_eq!(
            reference,
            Some(&json!("#/components/schemas/post_api_v1_items_id_body"))
        );
        assert_eq!(schemas["post_api_v1_items_id_body"]["type"], "object");
        assert!(post["responses"]["200"].is_object());
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut ids = HashSet::new();
        let operation = Map::new();
        let first = unique_operation_id(&operation, "get", "/a-b", &mut ids);
        let second = unique_operation_id(&operation, "get", "/a_b", &mut ids);
        assert_eq!((first.as_str(), second.as_str()), ("get_a_b", "get_a_b_2"));
    }
}
