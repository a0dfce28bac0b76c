//! The rules of single fields: text without control characters, lengths, mobile numbers, image
//! URLs, prices.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use super::limits::{MAX_DESCRIPTION, MAX_PRICE, MAX_URL};

/// Which control characters a text field may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Controls {
    /// None: names, mobile numbers, URLs and every other single-line field.
    None,
    /// Tab, line feed and carriage return (multi-line text such as `product_description`).
    LineBreaks,
}

/// The one check every text field of every write route goes through (new fields, e.g. of a
/// `PATCH`, call it too): refuses the C0 control characters U+0000..=U+001F and DEL U+007F, except
/// tab, line feed and carriage return where `allowed` is [`Controls::LineBreaks`]. PostgreSQL
/// cannot store U+0000 at all, and the others have no business in a name; refusing them here
/// makes the answer a 422 on every database.
///
/// Everything else is text: a byte-order mark U+FEFF, C1 controls U+0080..=U+009F and other
/// format characters are stored as sent (fields with stricter rules, such as image URLs, check
/// those themselves).
pub fn check_controls(text: &str, allowed: Controls) -> Result<(), String> {
    let bad = text.chars().enumerate().find(|&(_, c)| {
        c.is_ascii_control()
            && !(allowed == Controls::LineBreaks && matches!(c, '\t' | '\n' | '\r'))
    });
    match bad {
        None => Ok(()),
        Some((index, c)) => Err(format!(
            "must not contain control characters (found U+{:04X} at character {index}){}",
            u32::from(c),
            match allowed {
                Controls::None => "",
                Controls::LineBreaks => "; only tab, line feed and carriage return are allowed",
            }
        )),
    }
}

/// A string of `1..=max` characters (Unicode scalar values, not bytes) that is not only
/// whitespace and holds no control characters.
pub(super) fn check_text(text: &str, max: usize) -> Result<(), String> {
    check_controls(text, Controls::None)?;
    if text.trim().is_empty() {
        return Err("must not be empty".into());
    }
    check_length(text, max)
}

pub(super) fn check_length(text: &str, max: usize) -> Result<(), String> {
    let chars = text.chars().count();
    if chars > max {
        return Err(format!("must be at most {max} characters (got {chars})"));
    }
    Ok(())
}

pub(super) fn check_description(text: &str) -> Result<(), String> {
    check_controls(text, Controls::LineBreaks)?;
    check_length(text, MAX_DESCRIPTION)
}

pub(super) fn check_mobile(mobile: &str) -> Result<(), String> {
    check_controls(mobile, Controls::None)?;
    let digits = mobile.strip_prefix('+').unwrap_or(mobile);
    if (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err("must be 7 to 15 digits with an optional leading +".into())
    }
}

/// Characters that do not show: the url crate would drop or percent-encode them, so the URL a
/// worker fetches would not be the one a reader of the request sees.
fn invisible(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// An absolute `http`/`https` URL naming a host. The raw text is checked before parsing: the url
/// crate silently strips leading and trailing C0 controls and spaces and removes tabs and line
/// breaks anywhere, so without this check the URL fetched could differ from the one validated.
/// What is left for the parser to normalise (IDN hosts to punycode, case, percent-encoding) is
/// the same normalisation the worker's parse applies to the stored text.
pub(super) fn check_image_url(url: &str) -> Result<(), String> {
    check_controls(url, Controls::None)?;
    if let Some((index, c)) = url.chars().enumerate().find(|&(_, c)| invisible(c)) {
        return Err(format!(
            "must not contain whitespace or invisible characters (found U+{:04X} at character \
             {index}); percent-encode it",
            u32::from(c)
        ));
    }
    let chars = url.chars().count();
    if chars > MAX_URL {
        return Err(format!(
            "must be at most {MAX_URL} characters (got {chars})"
        ));
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http or https URL, not {}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    Ok(())
}

/// Parses a price: a JSON number or a numeric string, ≥ 0, at most 2 decimals, at most
/// 9999999999.99. Numbers are read from their decimal text, never through a float sum.
pub fn parse_price(value: &Value) -> Result<Decimal, String> {
    let text = match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.trim().to_owned(),
        _ => return Err("must be a number or a numeric string".into()),
    };
    let price = Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| format!("`{text}` is not a number"))?
        .normalize();
    if price.is_sign_negative() && !price.is_zero() {
        return Err("must not be negative".into());
    }
    if price.scale() > 2 {
        return Err("must have at most 2 decimals".into());
    }
    if price > MAX_PRICE {
        return Err(format!("must be at most {MAX_PRICE}"));
    }
    Ok(price.abs())
}
