//! Field validation of request bodies and query strings, as the HTTP contract states it.
//!
//! Validation collects every failing field instead of stopping at the first one, so a client
//! sees all its mistakes in one 422.

use mq_core::domain::{NewProduct, NewUser, ProductPatch, UserPatch};
use serde_json::{Map, Value};

use super::error::ApiError;

mod fields;
mod limits;
mod query;
mod rules;

use fields::Fields;
pub use limits::*;
pub use query::{product_filter, user_filter};
pub use rules::{check_controls, parse_price, Controls};

/// Validates the body of `POST /users`.
pub fn new_user(body: &Map<String, Value>) -> Result<NewUser, ApiError> {
    let mut fields = Fields::new(body);
    let name = fields.text("name", MAX_USER_NAME);
    let mobile = fields
        .present("mobile")
        .and_then(|value| fields.mobile_value(value));
    let latitude = fields.number_in("latitude", -90.0, 90.0);
    let longitude = fields.number_in("longitude", -180.0, 180.0);
    let user = (|| {
        Some(NewUser {
            name: name?,
            mobile: mobile?,
            latitude: latitude?,
            longitude: longitude?,
        })
    })();
    fields.finish(user)
}

/// Validates the body of `POST /products`.
pub fn new_product(body: &Map<String, Value>) -> Result<NewProduct, ApiError> {
    let mut fields = Fields::new(body);
    let user_id = match fields.present("user_id") {
        Some(value) => match value.as_i64() {
            Some(id) if id > 0 => Some(id),
            _ => {
                fields.fail("user_id", "must be a positive integer");
                None
            }
        },
        None => None,
    };
    let product_name = fields.text("product_name", MAX_PRODUCT_NAME);
    let product_description = fields.description();
    let product_images = fields
        .present("product_images")
        .and_then(|value| fields.images_value(value));
    let product_price = fields
        .present("product_price")
        .and_then(|value| fields.price_value(value));
    let product = (|| {
        Some(NewProduct {
            user_id: user_id?,
            product_name: product_name?,
            product_description: product_description?,
            product_images: product_images?,
            product_price: product_price?,
        })
    })();
    fields.finish(product)
}

/// The fields `PATCH /users/{id}` may set.
const USER_FIELDS: [&str; 4] = ["name", "mobile", "latitude", "longitude"];

/// Validates the body of `PATCH /users/{id}`: any of the fields of `POST /users`, with the same
/// rules, at least one of them.
pub fn user_patch(body: &Map<String, Value>) -> Result<UserPatch, ApiError> {
    let mut fields = Fields::new(body);
    fields.require_one_of(&USER_FIELDS);
    let name = fields.set("name");
    let name = name.and_then(|value| fields.text_value("name", value, MAX_USER_NAME));
    let mobile = fields.set("mobile");
    let mobile = mobile.and_then(|value| fields.mobile_value(value));
    let latitude = fields.set("latitude");
    let latitude = latitude.and_then(|value| fields.number_value("latitude", value, -90.0, 90.0));
    let longitude = fields.set("longitude");
    let longitude =
        longitude.and_then(|value| fields.number_value("longitude", value, -180.0, 180.0));
    fields.finish(Some(UserPatch {
        name,
        mobile,
        latitude,
        longitude,
    }))
}

/// The fields `PATCH /products/{id}` may set.
const PRODUCT_FIELDS: [&str; 4] = [
    "product_name",
    "product_description",
    "product_images",
    "product_price",
];

/// Validates the body of `PATCH /products/{id}`: any of the fields of `POST /products` but
/// `user_id` (a product keeps its owner), with the same rules, at least one of them;
/// `product_description: null` removes the description.
pub fn product_patch(body: &Map<String, Value>) -> Result<ProductPatch, ApiError> {
    let mut fields = Fields::new(body);
    fields.require_one_of(&PRODUCT_FIELDS);
    if body.contains_key("user_id") {
        fields.fail("user_id", "cannot be changed: a product keeps its owner");
    }
    let product_name = fields.set("product_name");
    let product_name =
        product_name.and_then(|value| fields.text_value("product_name", value, MAX_PRODUCT_NAME));
    let product_description = if body.contains_key("product_description") {
        fields.description()
    } else {
        None
    };
    let product_images = fields.set("product_images");
    let product_images = product_images.and_then(|value| fields.images_value(value));
    let product_price = fields.set("product_price");
    let product_price = product_price.and_then(|value| fields.price_value(value));
    fields.finish(Some(ProductPatch {
        product_name,
        product_description,
        product_images,
        product_price,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::rules::check_image_url;
    use super::*;

    fn fields_of(error: ApiError) -> Vec<String> {
        error.details.into_iter().map(|d| d.field).collect()
    }

    #[test]
    fn max_price_constant_is_right() {
        assert_eq!(MAX_PRICE.to_string(), "9999999999.99");
    }

    #[test]
    fn prices() {
        for (input, expected) in [
            (json!(0), "0"),
            (json!(0.1), "0.1"),
            (json!(0.2), "0.2"),
            (json!(19.99), "19.99"),
            (json!("10.50"), "10.5"),
            (json!(9999999999.99), "9999999999.99"),
            (json!("1e2"), "100"),
        ] {
            assert_eq!(
                parse_price(&input).unwrap().to_string(),
                expected,
                "{input}"
            );
        }
        for bad in [
            json!(-1),
            json!(0.001),
            json!("abc"),
            json!(true),
            json!(10000000000u64),
            json!("NaN"),
        ] {
            assert!(parse_price(&bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn every_bad_product_field_is_listed() {
        let body = json!({
            "user_id": "seven",
            "product_name": "",
            "product_description": 5,
            "product_images": ["ftp://x/y.jpg", "http://ok.example/a.jpg", 3],
            "product_price": -2
        });
        let error = new_product(body.as_object().unwrap()).unwrap_err();
        assert_eq!(
            fields_of(error),
            [
                "user_id",
                "product_name",
                "product_description",
                "product_images[0]",
                "product_images[2]",
                "product_price"
            ]
        );
    }

    #[test]
    fn a_valid_product_passes() {
        let body = json!({
            "user_id": 1,
            "product_name": "Lamp ✓",
            "product_images": ["https://cdn.example/lamp.jpg"],
            "product_price": "12.30"
        });
        let product = new_product(body.as_object().unwrap()).unwrap();
        assert_eq!(product.product_price.to_string(), "12.3");
        assert_eq!(product.product_description, None);
    }

    #[test]
    fn user_rules() {
        let bad = json!({"name": " ", "mobile": "12-34", "latitude": 91, "longitude": "east"});
        let error = new_user(bad.as_object().unwrap()).unwrap_err();
        assert_eq!(
            fields_of(error),
            ["name", "mobile", "latitude", "longitude"]
        );
        let good =
            json!({"name": "Ada", "mobile": "+4915112345678", "latitude": -90, "longitude": 180});
        assert!(new_user(good.as_object().unwrap()).is_ok());
    }

    /// Every C0 control character and DEL.
    fn controls() -> impl Iterator<Item = char> {
        (0u8..=0x1f).chain([0x7f]).map(char::from)
    }

    #[test]
    fn check_controls_refuses_c0_and_del() {
        for c in controls() {
            let text = format!("ab{c}c");
            let error = check_controls(&text, Controls::None).unwrap_err();
            assert!(
                error.contains(&format!("U+{:04X} at character 2", u32::from(c))),
                "{error}"
            );
            let multiline = check_controls(&text, Controls::LineBreaks);
            assert_eq!(
                multiline.is_ok(),
                matches!(c, '\t' | '\n' | '\r'),
                "{c:?} in multi-line text: {multiline:?}"
            );
        }
        for fine in [
            "",
            "plain",
            "Zoë 😀 ✓",
            "\u{feff}bom",
            "\u{80}\u{9f} C1",
            "\u{200b}zero width",
        ] {
            assert_eq!(check_controls(fine, Controls::None), Ok(()), "{fine:?}");
        }
    }

    fn product_with(patch: Value) -> Map<String, Value> {
        let mut body = json!({
            "user_id": 1,
            "product_name": "Lamp",
            "product_description": "bright",
            "product_images": ["https://cdn.example/lamp.jpg"],
            "product_price": 1
        });
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        body.as_object().unwrap().clone()
    }

    fn user_with(patch: Value) -> Map<String, Value> {
        let mut body =
            json!({"name": "Ada", "mobile": "+4915112345678", "latitude": 1, "longitude": 2});
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        body.as_object().unwrap().clone()
    }

    #[test]
    fn control_characters_in_every_user_field_are_listed() {
        for c in controls() {
            let body = user_with(
                json!({"name": format!("A{c}da"), "mobile": format!("+49{c}1511234567")}),
            );
            let error = new_user(&body).unwrap_err();
            assert_eq!(fields_of(error.clone()), ["name", "mobile"], "{c:?}");
            assert!(
                error
                    .details
                    .iter()
                    .all(|d| d.message.contains("control characters")),
                "{error:?}"
            );
        }
        // The controls are found wherever they are, also leading, trailing and alone.
        for name in ["\u{0}", "\u{0}Ada", "Ada\u{0}", "\t", "Ada\n"] {
            let error = new_user(&user_with(json!({"name": name}))).unwrap_err();
            assert_eq!(fields_of(error), ["name"], "{name:?}");
        }
        assert!(new_user(&user_with(json!({"name": "\u{feff}Ada"}))).is_ok());
    }

    #[test]
    fn control_characters_in_every_product_field_are_listed() {
        for c in controls() {
            let body = product_with(json!({
                "product_name": format!("La{c}mp"),
                "product_description": format!("bri{c}ght"),
                "product_images": ["https://cdn.example/ok.jpg", format!("https://cdn.example/{c}.jpg")]
            }));
            let expected: &[&str] = if matches!(c, '\t' | '\n' | '\r') {
                &["product_name", "product_images[1]"]
            } else {
                &["product_name", "product_description", "product_images[1]"]
            };
            assert_eq!(
                fields_of(new_product(&body).unwrap_err()),
                expected,
                "{c:?}"
            );
        }
        let multiline =
            product_with(json!({"product_description": "line 1\r\n\tline 2\n\u{feff}"}));
        assert_eq!(
            new_product(&multiline)
                .unwrap()
                .product_description
                .as_deref(),
            Some("line 1\r\n\tline 2\n\u{feff}")
        );
    }

    #[test]
    fn image_urls_are_checked_as_sent() {
        for bad in [
            " https://cdn.example/a.jpg",
            "https://cdn.example/a.jpg ",
            "\u{0}https://cdn.example/a.jpg",
            "https://cdn.example/a.jpg\u{1f}",
            "ht\ttps://cdn.example/a.jpg",
            "https://cdn.ex\nample/a.jpg",
            "https://cdn.example/a b.jpg",
            "https://cdn.example/a\u{a0}b.jpg",
            "https://cdn\u{feff}.example/a.jpg",
            "https://cdn\u{200b}.example/a.jpg",
            "https://cdn.example/a\u{2028}.jpg",
        ] {
            assert!(check_image_url(bad).is_err(), "{bad:?} must be refused");
        }
        // What the parser would have made of some of them: a different, valid-looking URL.
        assert_eq!(
            url::Url::parse("ht\ttps://cdn.ex\nample/a.jpg")
                .unwrap()
                .as_str(),
            "https://cdn.example/a.jpg"
        );
        assert_eq!(
            url::Url::parse("\u{0} https://cdn.example/a.jpg")
                .unwrap()
                .as_str(),
            "https://cdn.example/a.jpg"
        );
    }

    #[test]
    fn unicode_hosts_are_accepted_and_stored_as_sent() {
        let raw = "https://bücher.example/straße.jpg";
        assert_eq!(check_image_url(raw), Ok(()));
        let parsed = url::Url::parse(raw).unwrap();
        assert_eq!(parsed.host_str(), Some("xn--bcher-kva.example"));
        assert_eq!(parsed.path(), "/stra%C3%9Fe.jpg");
        let product = new_product(&product_with(json!({"product_images": [raw]}))).unwrap();
        assert_eq!(
            product.product_images,
            [raw],
            "stored as the client sent it"
        );
        // Percent-encoded spaces are how a URL carries them.
        assert_eq!(check_image_url("https://cdn.example/a%20b.jpg"), Ok(()));
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        for c in ['é', '😀'] {
            let name = |n: usize| c.to_string().repeat(n);
            assert!(new_user(&user_with(json!({"name": name(MAX_USER_NAME)}))).is_ok());
            let error = new_user(&user_with(json!({"name": name(MAX_USER_NAME + 1)}))).unwrap_err();
            assert_eq!(fields_of(error), ["name"]);

            let ok = product_with(json!({
                "product_name": name(MAX_PRODUCT_NAME),
                "product_description": name(MAX_DESCRIPTION),
            }));
            assert!(new_product(&ok).is_ok());
            let over = product_with(json!({
                "product_name": name(MAX_PRODUCT_NAME + 1),
                "product_description": name(MAX_DESCRIPTION + 1),
            }));
            assert_eq!(
                fields_of(new_product(&over).unwrap_err()),
                ["product_name", "product_description"]
            );

            let prefix = "https://cdn.example/";
            let url = |n: usize| format!("{prefix}{}", name(n - prefix.len()));
            assert_eq!(check_image_url(&url(MAX_URL)), Ok(()));
            assert!(check_image_url(&url(MAX_URL + 1)).is_err());
        }
    }

    #[test]
    fn query_text_has_no_control_characters() {
        for (q, ok) in [("lamp", true), ("la\u{0}mp", false), ("\u{1b}[31m", false)] {
            let query = HashMap::from([("q".to_owned(), q.to_owned())]);
            assert_eq!(product_filter(&query).is_ok(), ok, "{q:?}");
        }
    }

    #[test]
    fn filter_rules() {
        let query: HashMap<String, String> = [
            ("limit", "101"),
            ("min_price", "5"),
            ("max_price", "1"),
            ("after", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let error = product_filter(&query).unwrap_err();
        assert_eq!(fields_of(error), ["after", "limit", "min_price"]);
        assert_eq!(product_filter(&HashMap::new()).unwrap().limit, DEFAULT_PAGE);
    }
}
