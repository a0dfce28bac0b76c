//! Hostile text in every text field of every write route, on every stack: control characters,
//! lone surrogate escapes, byte-order marks and long multi-byte strings at and over each limit.
//! A refusal is a 422 naming the field (400 `invalid_json` for JSON the parser refuses), never a
//! 5xx, the same on SQLite and PostgreSQL, and nothing is stored.
//!
//! Decisions the table records: tab, line feed and carriage return are text in
//! `product_description` only; a byte-order mark U+FEFF is not a control character, so names and
//! descriptions keep it as sent, but an image URL refuses it with the other invisible characters
//! (the URL fetched must be the URL a reader sees). Limits count characters, not bytes.

use axum::http::StatusCode;
use product_pipeline::app::Roles;
use serde_json::{json, Value};

use crate::support::*;

/// What the request body is made of.
enum Body {
    Json(Value),
    /// JSON text sent as is (e.g. with escapes serde_json cannot represent as a `Value`).
    Text(String),
}

/// A placeholder replaced by a raw JSON string literal in [`with_raw`].
const RAW: &str = "\u{1}raw\u{1}";

/// `base` with `field` set to `RAW`, then `RAW`'s literal replaced by `literal` (raw JSON text).
fn with_raw(base: &Value, pointer: &str, literal: &str) -> Body {
    let mut body = base.clone();
    *body.pointer_mut(pointer).unwrap() = json!(RAW);
    let text = body.to_string();
    let placeholder = serde_json::to_string(RAW).unwrap();
    assert!(text.contains(&placeholder));
    Body::Text(text.replace(&placeholder, literal))
}

fn with(base: &Value, pointer: &str, value: Value) -> Body {
    let mut body = base.clone();
    *body.pointer_mut(pointer).unwrap() = value;
    Body::Json(body)
}

async fn send(app: &App, path: &str, body: &Body, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = client()
        .post(app.url(path))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = match body {
        Body::Json(value) => request.body(value.to_string()),
        Body::Text(text) => request.body(text.clone()),
    };
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn mobile() -> String {
    format!("+49{:010}", fastrand::u64(..10_000_000_000))
}

/// One text field of a write route.
struct Field {
    route: &'static str,
    /// JSON pointer into the body.
    pointer: &'static str,
    /// The name the 422 gives it.
    name: &'static str,
    /// Most characters, if the field has a length limit of its own.
    max: Option<usize>,
    /// Whether tab, line feed and carriage return are text here.
    multiline: bool,
    /// A valid value around a hostile piece.
    wrap: fn(&str) -> String,
}

/// Every text field of every write route.
fn fields() -> Vec<Field> {
    vec![
        Field {
            route: "/users",
            pointer: "/name",
            name: "name",
            max: Some(100),
            multiline: false,
            wrap: |s| format!("Ada{s}Lovelace"),
        },
        Field {
            route: "/users",
            pointer: "/mobile",
            name: "mobile",
            max: None,
            multiline: false,
            wrap: |s| format!("+4915{s}12345678"),
        },
        Field {
            route: "/products",
            pointer: "/product_name",
            name: "product_name",
            max: Some(255),
            multiline: false,
            wrap: |s| format!("Desk{s}lamp"),
        },
        Field {
            route: "/products",
            pointer: "/product_description",
            name: "product_description",
            max: Some(10_000),
            multiline: true,
            wrap: |s| format!("Brass{s}40 cm"),
        },
        Field {
            route: "/products",
            pointer: "/product_images/1",
            name: "product_images[1]",
            max: Some(2048),
            multiline: false,
            wrap: |s| format!("https://img.example/a{s}b.jpg"),
        },
    ]
}

/// Table test: every field × every hostile value; then the accepted boundaries, stored exactly.
pub async fn hostile_strings(stack: &Stack) {
    let app = stack.start(Roles::API).await;
    let user = create_user(&app).await;
    // Every refused user body carries this mobile; registering it at the end proves none was stored.
    let unused_mobile = mobile();
    let user_base =
        json!({"name": "Ada", "mobile": unused_mobile, "latitude": 10.0, "longitude": 20.0});
    let product_base = json!({
        "user_id": user,
        "product_name": "Lamp",
        "product_description": "bright",
        "product_images": ["https://img.example/ok.jpg", "https://img.example/b.jpg"],
        "product_price": 9.5
    });

    // (label, route, body, headers, status, error code, fields)
    type Case = (
        String,
        &'static str,
        Body,
        Vec<(&'static str, &'static str)>,
        u16,
        &'static str,
        Vec<String>,
    );
    let mut cases: Vec<Case> = Vec::new();
    let mut accepted: Vec<(String, &'static str, Body)> = Vec::new();
    for field in fields() {
        let base = if field.route == "/users" {
            &user_base
        } else {
            &product_base
        };
        let refused = |label: &str, body: Body| {
            (
                format!("{} {label}", field.name),
                field.route,
                body,
                vec![],
                422,
                "validation_failed",
                vec![field.name.to_owned()],
            )
        };
        let mut controls: Vec<char> = vec![
            '\0', '\u{1}', '\u{8}', '\u{b}', '\u{1b}', '\u{1f}', '\u{7f}',
        ];
        let line_breaks = ['\t', '\n', '\r'];
        if field.multiline {
            for c in line_breaks {
                let value = (field.wrap)(&c.to_string());
                if field.route == "/products" {
                    accepted.push((
                        format!("{} {c:?}", field.name),
                        field.route,
                        with(base, field.pointer, json!(value)),
                    ));
                }
            }
        } else {
            controls.extend(line_breaks);
        }
        for c in controls {
            let value = (field.wrap)(&c.to_string());
            cases.push(refused(
                &format!("{c:?}"),
                with(base, field.pointer, json!(value)),
            ));
            // Leading and trailing too: the url crate would strip them silently.
            cases.push(refused(
                &format!("leading {c:?}"),
                with(
                    base,
                    field.pointer,
                    json!(format!("{c}{}", (field.wrap)(""))),
                ),
            ));
            cases.push(refused(
                &format!("trailing {c:?}"),
                with(
                    base,
                    field.pointer,
                    json!(format!("{}{c}", (field.wrap)(""))),
                ),
            ));
        }
        // The escaped form in the JSON text is the same character.
        cases.push(refused(
            "escaped \\u0000",
            with_raw(
                base,
                field.pointer,
                &format!("\"{}\"", (field.wrap)("\\u0000")),
            ),
        ));
        // Lone surrogates are not Unicode text: the JSON parser refuses them.
        for escape in ["\\ud800", "\\udfff", "\\ud83d", "\\ude00x"] {
            cases.push((
                format!("{} lone surrogate {escape}", field.name),
                field.route,
                with_raw(
                    base,
                    field.pointer,
                    &format!("\"{}\"", (field.wrap)(escape)),
                ),
                vec![],
                400,
                "invalid_json",
                vec![],
            ));
        }
        // A surrogate pair is one character, like a byte-order mark.
        match field.name {
            "mobile" => {
                cases.push(refused(
                    "surrogate pair",
                    with_raw(
                        base,
                        field.pointer,
                        &format!("\"{}\"", (field.wrap)("\\ud83d\\ude00")),
                    ),
                ));
                cases.push(refused(
                    "fullwidth digits",
                    with(base, field.pointer, json!("+４９１５１２３４５６７８")),
                ));
                cases.push(refused(
                    "byte-order mark",
                    with(
                        base,
                        field.pointer,
                        json!(format!("\u{feff}{}", (field.wrap)(""))),
                    ),
                ));
            }
            "product_images[1]" => {
                for (label, value) in [
                    (
                        "byte-order mark",
                        "https://img\u{feff}.example/a.jpg".to_owned(),
                    ),
                    (
                        "zero-width space",
                        "https://img\u{200b}.example/a.jpg".to_owned(),
                    ),
                    ("space", " https://img.example/a.jpg".to_owned()),
                    ("inner space", "https://img.example/a b.jpg".to_owned()),
                    (
                        "no-break space",
                        "https://img.example/a\u{a0}b.jpg".to_owned(),
                    ),
                ] {
                    cases.push(refused(label, with(base, field.pointer, json!(value))));
                }
                accepted.push((
                    "image surrogate pair".into(),
                    field.route,
                    with_raw(
                        base,
                        field.pointer,
                        &format!("\"{}\"", (field.wrap)("\\ud83d\\ude00")),
                    ),
                ));
                accepted.push((
                    "unicode host".into(),
                    field.route,
                    with(
                        base,
                        field.pointer,
                        json!("https://bücher.example/straße.jpg"),
                    ),
                ));
            }
            _ => {
                for (label, body) in [
                    (
                        "surrogate pair",
                        with_raw(
                            base,
                            field.pointer,
                            &format!("\"{}\"", (field.wrap)("\\ud83d\\ude00")),
                        ),
                    ),
                    (
                        "byte-order mark",
                        with(
                            base,
                            field.pointer,
                            json!(format!("\u{feff}{}", (field.wrap)("\u{feff}"))),
                        ),
                    ),
                ] {
                    accepted.push((format!("{} {label}", field.name), field.route, body));
                }
            }
        }
        // Long multi-byte strings: at the limit accepted, one over refused.
        if let Some(max) = field.max {
            let fixed = (field.wrap)("").chars().count();
            for c in ['é', '😀'] {
                let value = |n: usize| (field.wrap)(&c.to_string().repeat(n - fixed));
                cases.push(refused(
                    &format!("{} × {c}", max + 1),
                    with(base, field.pointer, json!(value(max + 1))),
                ));
                accepted.push((
                    format!("{} {max} × {c}", field.name),
                    field.route,
                    with(base, field.pointer, json!(value(max))),
                ));
            }
        }
    }
    // Several hostile fields at once: every one is listed.
    let mut several = product_base.clone();
    several["product_name"] = json!("a\u{0}");
    several["product_description"] = json!("b\u{0}");
    several["product_images"] = json!([
        "https://img.example/\u{0}.jpg",
        "https://img.example/ok.jpg",
        " https://img.example/x.jpg"
    ]);
    cases.push((
        "every product field".into(),
        "/products",
        Body::Json(several),
        vec![],
        422,
        "validation_failed",
        [
            "product_name",
            "product_description",
            "product_images[0]",
            "product_images[2]",
        ]
        .map(String::from)
        .to_vec(),
    ));
    let mut both = user_base.clone();
    both["name"] = json!("\u{1b}[31mred");
    both["mobile"] = json!("\u{0}");
    cases.push((
        "every user field".into(),
        "/users",
        Body::Json(both),
        vec![],
        422,
        "validation_failed",
        vec!["name".into(), "mobile".into()],
    ));
    // A hostile Idempotency-Key is refused before anything is stored.
    cases.push((
        "idempotency key with a tab".into(),
        "/users",
        Body::Json(user_base.clone()),
        vec![("idempotency-key", "a\tb")],
        400,
        "invalid_idempotency_key",
        vec![],
    ));

    for (label, route, body, headers, status, code, fields) in &cases {
        let (got, answer) = send(&app, route, body, headers).await;
        assert_eq!(got.as_u16(), *status, "{label}: {answer}");
        assert_eq!(answer["error"]["code"], *code, "{label}: {answer}");
        let details = error_fields(&answer).unwrap_or_else(|| panic!("{label}: {answer}"));
        assert_eq!(details, *fields, "{label}: {answer}");
    }

    // Nothing was stored by any refused request.
    let (_, listing) = get_json(&app, &format!("/products?user_id={user}&limit=100")).await;
    assert_eq!(listing["items"], json!([]), "a refused product was stored");
    let (status, answer) = send(&app, "/users", &Body::Json(user_base.clone()), &[]).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the mobile of the refused users is free: {answer}"
    );

    // Control characters in the query of the list route are a 422 too, not a database error.
    for q in ["%00", "a%1Bb", "%7F"] {
        let (status, answer) = get_json(&app, &format!("/products?q={q}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "q={q}: {answer}");
        assert_eq!(answer["error"]["details"][0]["field"], "q", "{answer}");
    }

    // What is accepted is stored exactly as sent, multi-byte and all. Each user gets a mobile
    // of its own (the bodies above carry the one that must stay free).
    for (label, route, body) in &accepted {
        let text = match body {
            Body::Json(value) => value.to_string(),
            Body::Text(text) => text.clone(),
        };
        let body = Body::Text(text.replace(&unused_mobile, &mobile()));
        let Body::Text(text) = &body else {
            unreachable!()
        };
        let sent: Value = serde_json::from_str(text).unwrap();
        let (status, answer) = send(&app, route, &body, &[]).await;
        assert_eq!(status, StatusCode::CREATED, "{label}: {answer}");
        let (path, fields): (String, &[&str]) = if *route == "/users" {
            (format!("/users/{}", answer["id"]), &["name", "mobile"])
        } else {
            (
                format!("/products/{}", answer["product_id"]),
                &["product_name", "product_description", "product_images"],
            )
        };
        let (status, stored) = get_json(&app, &path).await;
        assert_eq!(status, StatusCode::OK, "{label}: {stored}");
        for field in fields {
            assert_eq!(
                stored[field], sent[field],
                "{label}: {field} stored as sent"
            );
        }
    }
    app.stop().await;
}
