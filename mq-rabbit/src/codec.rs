//! Conversions between [`mq_core`] values and AMQP: message ↔ properties, delivery count →
//! attempt, lapin errors → [`mq_core::Error`].

use std::collections::BTreeMap;

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use mq_core::headers::MESSAGE_ID;
use mq_core::{Error, Message, Retry};

/// Header carrying the message key (the AMQP routing key is the topic).
pub const KEY_HEADER: &str = "x-message-key";
/// Header quorum queues set on redeliveries: how many times the message was delivered before.
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// AMQP `delivery_mode` of persistent messages.
const PERSISTENT: u8 = 2;
/// Longest value a short string (such as the `message_id` property) can hold.
const SHORT_STRING_MAX: usize = 255;

/// Headers that belong to this backend and never reach the application as message headers.
fn reserved(name: &str) -> bool {
    name == KEY_HEADER || name == MESSAGE_ID || name == DELIVERY_COUNT_HEADER
}

/// The AMQP properties of `message`: persistent, its id as `message_id`, its key and headers in
/// the headers table.
pub fn properties(message: &Message) -> BasicProperties {
    let mut table = FieldTable::default();
    for (name, value) in message.headers() {
        // A header name must fit a short string; reserved names are ours.
        if name.len() <= SHORT_STRING_MAX && !reserved(name) {
            table.insert(
                ShortString::from(name.as_str()),
                AMQPValue::LongString(LongString::from(value.as_bytes())),
            );
        }
    }
    if let Some(key) = message.key() {
        table.insert(
            ShortString::from(KEY_HEADER),
            AMQPValue::LongString(LongString::from(key.as_bytes())),
        );
    }
    let mut properties = BasicProperties::default().with_delivery_mode(PERSISTENT);
    if message.id().len() <= SHORT_STRING_MAX {
        properties = properties.with_message_id(ShortString::from(message.id()));
    } else {
        table.insert(
            ShortString::from(MESSAGE_ID),
            AMQPValue::LongString(LongString::from(message.id().as_bytes())),
        );
    }
    if let Some(content_type) = message.header("content-type") {
        if content_type.len() <= SHORT_STRING_MAX {
            properties = properties.with_content_type(ShortString::from(content_type));
        }
    }
    properties.with_headers(table)
}

/// Rebuilds the [`Message`] of a delivery. A message from a foreign producer without a
/// `message_id` gets a fresh id.
pub fn message(properties: &BasicProperties, payload: Vec<u8>) -> Message {
    let table = properties.headers().as_ref();
    let lookup = |name: &str| table.and_then(|t| t.inner().get(name)).map(value_to_string);
    let id = properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .or_else(|| lookup(MESSAGE_ID));
    let key = lookup(KEY_HEADER);
    let mut headers = BTreeMap::new();
    if let Some(table) = table {
        for (name, value) in table {
            if !reserved(name.as_str()) {
                headers.insert(name.as_str().to_owned(), value_to_string(value));
            }
        }
    }
    match id {
        Some(id) => Message::from_parts(id, key, headers, payload),
        None => {
            let fresh = Message::new(Vec::new());
            Message::from_parts(fresh.id(), key, headers, payload)
        }
    }
}

/// The attempt number (1 for the first delivery) of a delivery: quorum queues count earlier
/// deliveries in `x-delivery-count`; without it a `redelivered` flag means at least the second.
pub fn attempt(properties: &BasicProperties, redelivered: bool) -> u32 {
    let count = properties
        .headers()
        .as_ref()
        .and_then(|table| table.inner().get(DELIVERY_COUNT_HEADER))
        .and_then(value_to_u64);
    match count {
        Some(count) => u32::try_from(count)
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1),
        None if redelivered => 2,
        None => 1,
    }
}

fn value_to_u64(value: &AMQPValue) -> Option<u64> {
    match *value {
        AMQPValue::ShortShortInt(v) => u64::try_from(v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(v.into()),
        AMQPValue::ShortInt(v) => u64::try_from(v).ok(),
        AMQPValue::ShortUInt(v) => Some(v.into()),
        AMQPValue::LongInt(v) => u64::try_from(v).ok(),
        AMQPValue::LongUInt(v) => Some(v.into()),
        AMQPValue::LongLongInt(v) => u64::try_from(v).ok(),
        AMQPValue::Timestamp(v) => Some(v),
        AMQPValue::LongString(ref s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok(),
        AMQPValue::ShortString(ref s) => s.as_str().parse().ok(),
        _ => None,
    }
}

/// A header value as text: strings as they are (invalid UTF-8 replaced), numbers in decimal,
/// anything else in a debug rendering. Headers we write are always strings.
fn value_to_string(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::Float(f) => f.to_string(),
        AMQPValue::Double(d) => d.to_string(),
        AMQPValue::ByteArray(bytes) => String::from_utf8_lossy(bytes.as_slice()).into_owned(),
        AMQPValue::Void => String::new(),
        other => match value_to_u64(other) {
            Some(n) => n.to_string(),
            None => match *other {
                AMQPValue::ShortShortInt(v) => v.to_string(),
                AMQPValue::ShortInt(v) => v.to_string(),
                AMQPValue::LongInt(v) => v.to_string(),
                AMQPValue::LongLongInt(v) => v.to_string(),
                _ => format!("{other:?}"),
            },
        },
    }
}

/// Classifies a lapin error: refusals of the request itself (access refused, precondition
/// failed, not found, not allowed, ...) are permanent; lost connections, closed channels, I/O
/// errors and forced closes are transient ([`Error::Unavailable`]).
pub fn lapin_error(context: &str, error: lapin::Error) -> Error {
    let permanent = match &error {
        lapin::Error::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(soft) => matches!(
                soft,
                AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::NOTFOUND
                    | AMQPSoftError::PRECONDITIONFAILED
                    | AMQPSoftError::CONTENTTOOLARGE
            ),
            AMQPErrorKind::Hard(hard) => matches!(
                hard,
                AMQPHardError::NOTALLOWED
                    | AMQPHardError::NOTIMPLEMENTED
                    | AMQPHardError::SYNTAXERROR
                    | AMQPHardError::COMMANDINVALID
                    | AMQPHardError::INVALIDPATH
            ),
        },
        lapin::Error::InvalidProtocolVersion(_) | lapin::Error::SerialisationError(_) => true,
        _ => false,
    };
    if permanent {
        Error::backend(format!("{context}: {error}"), Retry::Permanent, error)
    } else {
        Error::unavailable(format!("{context}: {error}"), error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_headers(entries: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut table = FieldTable::default();
        for (name, value) in entries {
            table.insert(ShortString::from(*name), value.clone());
        }
        BasicProperties::default().with_headers(table)
    }

    #[test]
    fn message_round_trips_through_properties() {
        let original = Message::new(vec![0u8, 255, 1])
            .with_key("product-7")
            .with_header("x-custom", "välue ✓")
            .with_header("traceparent", "00-abc-def-01");
        let props = properties(&original);
        assert_eq!(*props.delivery_mode(), Some(2), "persistent");
        assert_eq!(
            props.message_id().as_ref().map(ShortString::as_str),
            Some(original.id())
        );
        let back = message(&props, original.payload().to_vec());
        assert_eq!(back, original);
    }

    #[test]
    fn reserved_headers_do_not_leak_into_the_message() {
        let original = Message::new("p").with_key("k");
        let mut props = properties(&original);
        let mut table = props.headers().clone().unwrap_or_default();
        table.insert(DELIVERY_COUNT_HEADER.into(), AMQPValue::LongLongInt(2));
        props = props.with_headers(table);
        let back = message(&props, b"p".to_vec());
        assert_eq!(back.key(), Some("k"));
        assert!(back.headers().is_empty(), "{:?}", back.headers());
    }

    #[test]
    fn long_ids_travel_in_a_header() {
        let id = "i".repeat(300);
        let original = Message::new("p").with_id(id.clone());
        let props = properties(&original);
        assert!(props.message_id().is_none());
        assert_eq!(message(&props, b"p".to_vec()).id(), id);
    }

    #[test]
    fn content_type_is_also_set_as_a_property() {
        let json = Message::json(&serde_json::json!({"product_id": 1})).unwrap();
        let props = properties(&json);
        assert_eq!(
            props.content_type().as_ref().map(ShortString::as_str),
            Some("application/json")
        );
        assert_eq!(
            message(&props, json.payload().to_vec()).header("content-type"),
            Some("application/json")
        );
    }

    #[test]
    fn foreign_messages_get_an_id_and_stringified_headers() {
        let props = with_headers(&[
            ("n", AMQPValue::LongInt(-5)),
            ("b", AMQPValue::Boolean(true)),
            ("s", AMQPValue::ShortString("x".into())),
        ]);
        let got = message(&props, b"{}".to_vec());
        assert!(!got.id().is_empty());
        assert_eq!(got.key(), None);
        assert_eq!(got.header("n"), Some("-5"));
        assert_eq!(got.header("b"), Some("true"));
        assert_eq!(got.header("s"), Some("x"));
    }

    #[test]
    fn attempt_counts_from_the_delivery_count_header() {
        assert_eq!(attempt(&BasicProperties::default(), false), 1);
        assert_eq!(attempt(&BasicProperties::default(), true), 2);
        for value in [
            AMQPValue::LongLongInt(1),
            AMQPValue::LongInt(1),
            AMQPValue::ShortShortUInt(1),
            AMQPValue::LongString("1".into()),
        ] {
            let props = with_headers(&[(DELIVERY_COUNT_HEADER, value.clone())]);
            assert_eq!(attempt(&props, true), 2, "{value:?}");
        }
        let props = with_headers(&[(DELIVERY_COUNT_HEADER, AMQPValue::LongLongInt(4))]);
        assert_eq!(attempt(&props, true), 5);
        let props = with_headers(&[(DELIVERY_COUNT_HEADER, AMQPValue::LongLongInt(-1))]);
        assert_eq!(attempt(&props, false), 1, "nonsense counts are ignored");
        let props = with_headers(&[(DELIVERY_COUNT_HEADER, AMQPValue::LongLongInt(i64::MAX))]);
        assert_eq!(attempt(&props, true), u32::MAX);
    }

    #[test]
    fn error_classification() {
        use lapin::protocol::AMQPError;
        let refused = lapin::Error::ProtocolError(AMQPError::new(
            AMQPSoftError::PRECONDITIONFAILED.into(),
            "inequivalent arg".into(),
        ));
        assert!(!lapin_error("declare", refused).is_transient());
        let forced = lapin::Error::ProtocolError(AMQPError::new(
            AMQPHardError::CONNECTIONFORCED.into(),
            "closed via management plugin".into(),
        ));
        assert!(lapin_error("publish", forced).is_transient());
        let io = lapin::Error::IOError(std::sync::Arc::new(std::io::Error::other("reset")));
        assert!(matches!(
            lapin_error("publish", io),
            Error::Unavailable { .. }
        ));
    }
}
