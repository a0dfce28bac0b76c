//! Query strings: the filters and cursors of the listing routes.

use std::collections::HashMap;

use mq_core::domain::{ProductFilter, UserFilter};
use rust_decimal::Decimal;
use serde_json::Value;

use super::rules::{check_controls, check_length, parse_price, Controls};
use super::{DEFAULT_PAGE, MAX_PAGE, MAX_PRODUCT_NAME};
use crate::api::error::{ApiError, FieldError};

/// Reads integers from a query string, collecting every failure.
struct Integers<'a> {
    query: &'a HashMap<String, String>,
    errors: Vec<FieldError>,
}

impl Integers<'_> {
    /// The integer `field`, when present; a failure when it is not an integer ≥ `min`.
    fn get(&mut self, field: &str, min: i64) -> Option<i64> {
        let text = self.query.get(field)?;
        match text.parse::<i64>() {
            Ok(n) if n >= min => Some(n),
            _ => {
                self.errors.push(FieldError::new(
                    field,
                    format!("must be an integer ≥ {min}"),
                ));
                None
            }
        }
    }

    /// `limit` (at most [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent) and `after`.
    fn page(&mut self) -> (u32, Option<i64>) {
        let after = self.get("after", 0);
        let limit = self.get("limit", 1);
        if limit.is_some_and(|limit| limit > i64::from(MAX_PAGE)) {
            self.errors.push(FieldError::new(
                "limit",
                format!("must be at most {MAX_PAGE}"),
            ));
        }
        (limit.map_or(DEFAULT_PAGE, |l| l as u32), after)
    }
}

/// Validates the query of `GET /users`.
pub fn user_filter(query: &HashMap<String, String>) -> Result<UserFilter, ApiError> {
    let mut integers = Integers {
        query,
        errors: Vec::new(),
    };
    let (limit, after) = integers.page();
    if !integers.errors.is_empty() {
        return Err(ApiError::validation(integers.errors));
    }
    Ok(UserFilter { limit, after })
}

/// Validates the query of `GET /products`.
pub fn product_filter(query: &HashMap<String, String>) -> Result<ProductFilter, ApiError> {
    let mut integers = Integers {
        query,
        errors: Vec::new(),
    };
    let user_id = integers.get("user_id", 1);
    let (limit, after) = integers.page();
    let mut errors = integers.errors;
    let mut price = |field: &str| -> Option<Decimal> {
        let text = query.get(field)?;
        match parse_price(&Value::String(text.clone())) {
            Ok(price) => Some(price),
            Err(message) => {
                errors.push(FieldError::new(field, message));
                None
            }
        }
    };
    let min_price = price("min_price");
    let max_price = price("max_price");
    if let (Some(min), Some(max)) = (min_price, max_price) {
        if min > max {
            errors.push(FieldError::new(
                "min_price",
                "must not be greater than max_price",
            ));
        }
    }
    let q = query
        .get("q")
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty());
    if let Some(Err(message)) = q.as_ref().map(|q| {
        check_controls(q, Controls::None)?;
        check_length(q, MAX_PRODUCT_NAME)
    }) {
        errors.push(FieldError::new("q", message));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Ok(ProductFilter {
        user_id,
        min_price,
        max_price,
        q,
        limit,
        after,
    })
}
