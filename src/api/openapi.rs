//! The OpenAPI 3.1 document, generated from the handlers' annotations and served at
//! `GET /openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HttpMethod, ObjectBuilder, OpenApi as Document, Ref, RefOr, Required, Response,
    ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};

use super::{health, http_metrics, product_changes, products, schema, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "product-pipeline",
        description = "Ingest products over HTTP; their images are downloaded, compressed and stored asynchronously through a message broker."
    ),
    paths(
        users::create,
        users::get,
        users::list,
        users::update,
        users::delete,
        products::create,
        products::list,
        products::get,
        product_changes::update,
        product_changes::delete,
        product_changes::reprocess,
        health::healthz,
        health::readyz,
        http_metrics::metrics,
        serve,
    ),
    components(schemas(schema::ErrorBody, super::FieldError)),
    modifiers(&BearerToken, &MediaFiles, &ServingLimits),
    tags(
        (name = "users", description = "Owners of products"),
        (name = "products", description = "Products and their processed images"),
        (name = "media", description = "Compressed images"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

/// The API's OpenAPI 3.1 document.
pub fn openapi() -> Document {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub(super) async fn serve() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    });
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}

/// The `bearer` scheme the write routes accept (required only when the server sets `API_TOKEN`).
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The server's `API_TOKEN`; needed by write requests only when it is set",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /media/{key}`: its key spans several path segments, which OpenAPI cannot say in a
/// handler annotation, so it is described here.
struct MediaFiles;

impl Modify for MediaFiles {
    fn modify(&self, document: &mut Document) {
        let path = ParameterBuilder::new()
            .name("key")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(
                "A key from a product's `compressed_product_images` or `image_renditions`, e.g. `products/1/0-1024-3f2a9c0d1e2f3a4b.jpg` (slashes unencoded)",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)));
        let error = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build()
        };
        let image = || {
            ContentBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .content_media_type("image/*"),
                ))
                .build()
        };
        let operation = OperationBuilder::new()
            .tag("media")
            .summary(Some("A compressed image"))
            .parameter(path)
            .response(
                "200",
                ResponseBuilder::new()
                    .description(
                        "The image (JPEG, PNG or WebP); supports `Range` and conditional requests",
                    )
                    .content("image/*", image()),
            )
            .response(
                "206",
                ResponseBuilder::new()
                    .description(
                        "The requested byte range (`Range: bytes=...`), with `Content-Range`",
                    )
                    .content("image/*", image()),
            )
            .response(
                "304",
                ResponseBuilder::new().description("`If-None-Match` names this image's `ETag`"),
            )
            .response(
                "404",
                ResponseBuilder::new()
                    .description("No such image, or not a key the pipeline writes")
                    .content("application/json", error()),
            )
            .response(
                "416",
                ResponseBuilder::new().description(
                    "The range starts past the end of the image (`Content-Range: bytes */size`)",
                ),
            )
            .response(
                "503",
                ResponseBuilder::new()
                    .description("The media store is unavailable; retry later")
                    .content("application/json", error()),
            );
        document
            .paths
            .add_path_operation("/media/{key}", vec![HttpMethod::Get], operation.build());
    }
}

/// The answers of the serving limits, which every API route may give: 503 while
/// `HTTP_MAX_IN_FLIGHT` requests are in flight, and on writes 429 over `RATE_LIMIT_WRITES`; both
/// with `Retry-After`. (`/healthz`, `/readyz` and `/metrics` are exempt.)
struct ServingLimits;

impl ServingLimits {
    const EXEMPT: [&'static str; 3] = ["/healthz", "/readyz", "/metrics"];

    fn retry_later(description: &str) -> Response {
        ResponseBuilder::new()
            .description(description)
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    }

    fn add(operation: &mut Operation, write: bool) {
        let responses = &mut operation.responses.responses;
        const OVERLOADED: &str = "Overloaded: `HTTP_MAX_IN_FLIGHT` requests are in flight";
        let unavailable = match responses.get("503") {
            Some(RefOr::T(existing)) => format!("{}; or {OVERLOADED}", existing.description),
            _ => OVERLOADED.to_owned(),
        };
        responses.insert("503".into(), RefOr::T(Self::retry_later(&unavailable)));
        if write {
            responses.insert(
                "429".into(),
                RefOr::T(Self::retry_later(
                    "Too many writes from this client address (`RATE_LIMIT_WRITES`)",
                )),
            );
        }
    }
}

impl Modify for ServingLimits {
    fn modify(&self, document: &mut Document) {
        for (path, item) in document.paths.paths.iter_mut() {
            if Self::EXEMPT.contains(&path.as_str()) {
                continue;
            }
            for operation in [&mut item.get, &mut item.head].into_iter().flatten() {
                Self::add(operation, false);
            }
            let writes = [
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in writes.into_iter().flatten() {
                Self::add(operation, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::api::{router, AppState};

    const METHODS: [Method; 5] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];

    async fn app() -> (axum::Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/openapi.db", dir.path().display());
        let store = Arc::new(
            product_pipeline_store::Store::connect(
                &url,
                product_pipeline_store::StoreOptions::default(),
            )
            .await
            .unwrap(),
        );
        let state = AppState::new(
            store.clone(),
            store,
            product_pipeline_imaging::media::MediaStore::in_memory(),
        );
        (router(state), dir)
    }

    /// Every path template the router knows, read from its `Debug` output (axum has no other way
    /// to list routes), in OpenAPI spelling: a nested service's tail becomes `{path}`, a
    /// wildcard `{*key}` becomes `{key}`.
    fn routed_paths(app: &axum::Router) -> BTreeSet<String> {
        let debug = format!("{app:?}");
        let mut paths = BTreeSet::new();
        for quoted in debug.split('"').skip(1).step_by(2) {
            // Skipped: not paths, the catch-all axum adds for the fallback (and its root), and
            // the bare prefixes a nested service also answers at.
            if !quoted.starts_with('/')
                || quoted == "/"
                || quoted.contains("__private__axum_fallback")
                || quoted.ends_with('/')
                || debug.contains(&format!(
                    "\"{quoted}/{{*__private__axum_nest_tail_param}}\""
                ))
            {
                continue;
            }
            let path = match quoted.split_once("/{*__private__axum_nest_tail_param}") {
                Some((prefix, _)) => format!("{prefix}/{{path}}"),
                None => quoted.replace("{*", "{"),
            };
            paths.insert(path);
        }
        paths
    }

    fn documented(document: &Document, path: &str, method: &Method) -> bool {
        let Some(item) = document.paths.paths.get(path) else {
            return false;
        };
        let operation = match *method {
            Method::GET => &item.get,
            Method::POST => &item.post,
            Method::PUT => &item.put,
            Method::PATCH => &item.patch,
            Method::DELETE => &item.delete,
            _ => unreachable!(),
        };
        operation.is_some()
    }

    /// Fails when a route is added without documentation, or documented without a route: every
    /// method of every routed path is probed (405 means not routed) and compared with the
    /// document.
    #[tokio::test]
    async fn every_route_is_documented_and_every_documented_route_exists() {
        let (app, _dir) = app().await;
        let document = openapi();
        let routed = routed_paths(&app);
        assert!(
            routed.contains("/products/{id}") && routed.contains("/media/{key}"),
            "reading routes from axum's Debug output broke: {routed:?}"
        );
        let documented_paths: BTreeSet<String> = document.paths.paths.keys().cloned().collect();
        assert_eq!(routed, documented_paths, "routed vs documented paths");
        for path in &routed {
            let concrete = path
                .replace("{id}", "1")
                .replace("{key}", "products/1/0-x.jpg");
            for method in METHODS {
                let request = Request::builder()
                    .method(method.clone())
                    .uri(&concrete)
                    .body(Body::empty())
                    .unwrap();
                let status = app.clone().oneshot(request).await.unwrap().status();
                let is_routed = status != StatusCode::METHOD_NOT_ALLOWED;
                assert_eq!(
                    is_routed,
                    documented(&document, path, &method),
                    "{method} {path}: answered {status}; a routed operation must be documented and vice versa"
                );
            }
        }
    }

    #[tokio::test]
    async fn the_document_is_openapi_3_1_and_served() {
        let (app, _dir) = app().await;
        let request = Request::get("/openapi.json").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let served: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(served["openapi"], "3.1.0");
        assert_eq!(served, serde_json::to_value(openapi()).unwrap());
        for schema in [
            "Product",
            "ProductView",
            "User",
            "ProductStatus",
            "ImageError",
            "ImageRendition",
            "ErrorBody",
            "NewProductRequest",
            "NewUserRequest",
        ] {
            assert!(
                served["components"]["schemas"][schema].is_object(),
                "schema {schema}"
            );
        }
        assert_eq!(
            served["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let rendition = &served["components"]["schemas"]["ImageRendition"]["properties"];
        for field in ["index", "width", "height", "format", "bytes", "path", "url"] {
            assert!(rendition[field].is_object(), "rendition field {field}");
        }
        assert!(
            served["components"]["schemas"]["Product"]["properties"]["image_renditions"]
                .is_object()
        );
    }

    /// Every operation documents at least one success and one error answer, the write routes
    /// 401, and every route but the operations ones the 503 of load shedding (writes also the 429
    /// of rate limiting), with `Retry-After`.
    #[test]
    fn every_operation_documents_its_errors() {
        let document = serde_json::to_value(openapi()).unwrap();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path}"
                );
                if path != "/healthz" && path != "/openapi.json" {
                    assert!(
                        responses
                            .keys()
                            .any(|s| s.starts_with('4') || s.starts_with('5')),
                        "{method} {path} documents no error"
                    );
                }
                if method == "post" {
                    assert!(responses.contains_key("401"), "{method} {path}");
                    assert!(responses.contains_key("422"), "{method} {path}");
                }
                if !ServingLimits::EXEMPT.contains(&path.as_str()) {
                    let mut limits = vec!["503"];
                    if method == "post" {
                        limits.push("429");
                    }
                    for status in limits {
                        assert!(
                            responses[status]["headers"]["Retry-After"].is_object(),
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }

    /// The request schemas are written by hand next to the validation rules; their examples must
    /// pass validation and their limits must be the rules' limits.
    #[test]
    fn request_schemas_match_the_validation_rules() {
        use crate::api::validate;
        let document = serde_json::to_value(openapi()).unwrap();
        let schemas = &document["components"]["schemas"];
        let example = |name: &str| match &schemas[name]["example"] {
            serde_json::Value::Object(map) => map.clone(),
            other => panic!("{name} has no example: {other}"),
        };
        validate::new_user(&example("NewUserRequest")).expect("the user example is valid");
        for (name, parsed) in [
            (
                "Product",
                serde_json::from_value::<mq_core::domain::Product>(
                    schemas["Product"]["example"].clone(),
                )
                .err(),
            ),
            (
                "User",
                serde_json::from_value::<mq_core::domain::User>(schemas["User"]["example"].clone())
                    .err(),
            ),
        ] {
            assert!(
                parsed.is_none(),
                "the {name} example does not parse: {parsed:?}"
            );
        }
        validate::new_product(&example("NewProductRequest")).expect("the product example is valid");
        let limit = |schema: &str, field: &str, key: &str| {
            schemas[schema]["properties"][field][key]
                .as_f64()
                .unwrap_or_else(|| panic!("{schema}.{field} has no {key}"))
        };
        assert_eq!(
            limit("NewUserRequest", "name", "maxLength"),
            validate::MAX_USER_NAME as f64
        );
        assert_eq!(
            limit("NewProductRequest", "product_name", "maxLength"),
            validate::MAX_PRODUCT_NAME as f64
        );
        assert_eq!(
            limit("NewProductRequest", "product_images", "maxItems"),
            validate::MAX_IMAGES as f64
        );
        assert_eq!(
            limit("NewProductRequest", "product_price", "maximum").to_string(),
            validate::MAX_PRICE.to_string()
        );
    }
}
