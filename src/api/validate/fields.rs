//! [`Fields`]: reads a JSON object field by field, collecting every failure.

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::rules::{check_description, check_image_url, check_mobile, check_text, parse_price};
use super::MAX_IMAGES;
use crate::api::error::{ApiError, FieldError};

/// Collects field errors while reading a JSON object.
pub(super) struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub(super) fn new(body: &'a Map<String, Value>) -> Self {
        Self {
            body,
            errors: Vec::new(),
        }
    }

    pub(super) fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    pub(super) fn present(&mut self, field: &str) -> Option<&'a Value> {
        match self.body.get(field) {
            None | Some(Value::Null) => {
                self.fail(field, "is required");
                None
            }
            Some(value) => Some(value),
        }
    }

    /// A field a patch sets: `None` when absent, or null where null means nothing (a failure).
    pub(super) fn set(&mut self, field: &str) -> Option<&'a Value> {
        match self.body.get(field) {
            None => None,
            Some(Value::Null) => {
                self.fail(field, "cannot be null; leave it out to keep it");
                None
            }
            Some(value) => Some(value),
        }
    }

    /// A required string of `1..=max` characters that is not only whitespace.
    pub(super) fn text(&mut self, field: &str, max: usize) -> Option<String> {
        let value = self.present(field)?;
        self.text_value(field, value, max)
    }

    /// `value` as a string of `1..=max` characters that is not only whitespace.
    pub(super) fn text_value(&mut self, field: &str, value: &Value, max: usize) -> Option<String> {
        match value {
            Value::String(text) => match check_text(text, max) {
                Ok(()) => Some(text.clone()),
                Err(message) => {
                    self.fail(field, message);
                    None
                }
            },
            _ => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    /// A required number in `min..=max`.
    pub(super) fn number_in(&mut self, field: &str, min: f64, max: f64) -> Option<f64> {
        let value = self.present(field)?;
        self.number_value(field, value, min, max)
    }

    /// `value` as a number in `min..=max`.
    pub(super) fn number_value(
        &mut self,
        field: &str,
        value: &Value,
        min: f64,
        max: f64,
    ) -> Option<f64> {
        match value.as_f64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.fail(field, format!("must be between {min} and {max}"));
                None
            }
            None => {
                self.fail(field, "must be a number");
                None
            }
        }
    }

    /// `value` as a mobile number.
    pub(super) fn mobile_value(&mut self, value: &Value) -> Option<String> {
        match value {
            Value::String(mobile) => match check_mobile(mobile) {
                Ok(()) => Some(mobile.clone()),
                Err(message) => {
                    self.fail("mobile", message);
                    None
                }
            },
            _ => {
                self.fail("mobile", "must be a string of digits");
                None
            }
        }
    }

    /// `product_description` as the body has it (absent or null: none).
    pub(super) fn description(&mut self) -> Option<Option<String>> {
        match self.body.get("product_description") {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(text)) => match check_description(text) {
                Ok(()) => Some(Some(text.clone())),
                Err(message) => {
                    self.fail("product_description", message);
                    None
                }
            },
            Some(_) => {
                self.fail("product_description", "must be a string");
                None
            }
        }
    }

    /// `value` as `product_images`: 1 to [`MAX_IMAGES`] valid image URLs.
    pub(super) fn images_value(&mut self, value: &Value) -> Option<Vec<String>> {
        match value {
            Value::Array(urls) if urls.is_empty() || urls.len() > MAX_IMAGES => {
                self.fail(
                    "product_images",
                    format!(
                        "must hold 1 to {MAX_IMAGES} image URLs (got {})",
                        urls.len()
                    ),
                );
                None
            }
            Value::Array(urls) => {
                let mut valid = Vec::with_capacity(urls.len());
                for (index, url) in urls.iter().enumerate() {
                    let field = format!("product_images[{index}]");
                    match url {
                        Value::String(url) => match check_image_url(url) {
                            Ok(()) => valid.push(url.clone()),
                            Err(message) => self.fail(&field, message),
                        },
                        _ => self.fail(&field, "must be a string"),
                    }
                }
                (valid.len() == urls.len()).then_some(valid)
            }
            _ => {
                self.fail("product_images", "must be an array of image URLs");
                None
            }
        }
    }

    /// `value` as `product_price`.
    pub(super) fn price_value(&mut self, value: &Value) -> Option<Decimal> {
        match parse_price(value) {
            Ok(price) => Some(price),
            Err(message) => {
                self.fail("product_price", message);
                None
            }
        }
    }

    /// Fails when none of `known` is in the body: a patch must change something.
    pub(super) fn require_one_of(&mut self, known: &[&str]) {
        if !known.iter().any(|field| self.body.contains_key(*field)) {
            self.fail(
                "body",
                format!("must set at least one of {}", known.join(", ")),
            );
        }
    }

    pub(super) fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(ApiError::validation(self.errors)),
        }
    }
}
