//! How a [`Message`] travels as a Kafka record, both ways.
//!
//! - Publishing: the message id goes in the `x-message-id` header, in front of the message's own
//!   headers ([`record_headers`]).
//! - Consuming: a record librdkafka lends is copied once into a [`RawRecord`] (key and headers
//!   encoded in one buffer, the payload beside it, small parts sharing [`Chunks`]); the
//!   [`Message`] is built from it when the record is handed out, on the thread that consumes it.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use mq_core::headers::MESSAGE_ID;
use mq_core::Message;
use rdkafka::message::{Header, OwnedHeaders};

use crate::fast_hash::key_hash;

/// The headers of `message`'s record: its id, then its own headers.
pub(crate) fn record_headers(message: &Message) -> OwnedHeaders {
    let headers = OwnedHeaders::new_with_capacity(message.headers().len() + 1).insert(Header {
        key: MESSAGE_ID,
        value: Some(message.id()),
    });
    message
        .headers()
        .iter()
        .fold(headers, |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value.as_str()),
            })
        })
}

/// Record parts up to this size share [`CHUNK`]-sized buffers (see [`Chunks`]).
const SHARED_MAX: usize = 2 * 1024;
/// Size of a shared buffer: the most one retained small record can keep alive.
const CHUNK: usize = 32 * 1024;
/// Room reserved for a record's key and headers before they are encoded (one pass over the
/// headers; larger ones grow the chunk).
const META_ROOM: usize = 256;

/// Copies record parts out of librdkafka's buffers without an allocation per record: small
/// parts are appended to a shared chunk and handed out as slices of it (a reference count), so
/// a retained record keeps at most [`CHUNK`] bytes alive; larger parts get a buffer of their own.
#[derive(Default)]
pub(crate) struct Chunks {
    chunk: BytesMut,
}

impl Chunks {
    /// `size` bytes written by `fill` (which must not write more).
    fn bytes(&mut self, size: usize, fill: impl FnOnce(&mut BytesMut)) -> Bytes {
        if size == 0 {
            return Bytes::new();
        }
        if size > SHARED_MAX {
            let mut own = BytesMut::with_capacity(size);
            fill(&mut own);
            return own.freeze();
        }
        if self.chunk.capacity() - self.chunk.len() < size {
            self.chunk = BytesMut::with_capacity(CHUNK);
        }
        fill(&mut self.chunk);
        self.chunk.split().freeze()
    }

    /// The chunk, with room for at least `size` more bytes; what is written to it beyond that
    /// grows it (into a new buffer: the parts already handed out keep the old one).
    fn room(&mut self, size: usize) -> &mut BytesMut {
        if self.chunk.capacity() - self.chunk.len() < size {
            self.chunk = BytesMut::with_capacity(CHUNK.max(size));
        }
        &mut self.chunk
    }

    /// What was written since the last part, as a part.
    fn split(&mut self) -> Bytes {
        self.chunk.split().freeze()
    }
}

/// A fetched record as the consumer copied it out of librdkafka: key and headers encoded in
/// `meta`, the payload beside it. [`RawRecord::message`] builds the [`Message`]; an
/// acknowledger keeps the `RawRecord` (two reference counts, not a second copy of the message)
/// for requeue and dead letters.
pub(crate) struct RawRecord {
    /// The key, then (name, value) of every header in order; each part a little-endian `u32`
    /// length (`u32::MAX`: none) and the bytes.
    meta: Bytes,
    payload: Bytes,
}

/// A record just copied, with where it came from and its key's hash.
pub(crate) struct CopiedRecord {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// [`key_hash`] of the key, `None` for a record without one.
    pub(crate) key_hash: Option<u64>,
    pub(crate) record: RawRecord,
}

fn put_part(buf: &mut BytesMut, part: Option<&[u8]>) {
    match part {
        Some(bytes) => {
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            buf.extend_from_slice(bytes);
        }
        None => buf.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

fn take_part<'a>(meta: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = meta.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len);
    if len == u32::MAX {
        *meta = rest;
        return None;
    }
    let (part, rest) = rest.split_at_checked(len as usize)?;
    *meta = rest;
    Some(part)
}

/// The records [`RawRecord::copy`] takes. In a module of its own so that its method names do
/// not clash with rdkafka's `Message` trait.
pub(crate) mod lent {
    use rdkafka::message::{BorrowedMessage, Headers};

    use crate::partition_queue::FetchedRecord;

    /// A record as librdkafka lends it: through a split partition queue ([`FetchedRecord`]) or
    /// through the consumer queue (rdkafka's [`BorrowedMessage`]).
    pub(crate) trait LentRecord {
        fn partition(&self) -> i32;
        fn offset(&self) -> i64;
        fn key(&self) -> Option<&[u8]>;
        fn payload(&self) -> &[u8];
        /// Calls `each(name, value)` for every header, in order.
        fn for_each_header(&self, each: impl FnMut(&[u8], &[u8]));
    }

    impl LentRecord for FetchedRecord<'_> {
        fn partition(&self) -> i32 {
            FetchedRecord::partition(self)
        }
        fn offset(&self) -> i64 {
            FetchedRecord::offset(self)
        }
        fn key(&self) -> Option<&[u8]> {
            FetchedRecord::key(self)
        }
        fn payload(&self) -> &[u8] {
            FetchedRecord::payload(self)
        }
        fn for_each_header(&self, mut each: impl FnMut(&[u8], &[u8])) {
            FetchedRecord::for_each_header(self, |name, value| {
                each(name, value.unwrap_or_default())
            });
        }
    }

    impl LentRecord for BorrowedMessage<'_> {
        fn partition(&self) -> i32 {
            rdkafka::Message::partition(self)
        }
        fn offset(&self) -> i64 {
            rdkafka::Message::offset(self)
        }
        fn key(&self) -> Option<&[u8]> {
            rdkafka::Message::key(self)
        }
        fn payload(&self) -> &[u8] {
            rdkafka::Message::payload(self).unwrap_or_default()
        }
        fn for_each_header(&self, mut each: impl FnMut(&[u8], &[u8])) {
            if let Some(list) = rdkafka::Message::headers(self) {
                for header in list.iter() {
                    each(header.key.as_bytes(), header.value.unwrap_or_default());
                }
            }
        }
    }
}

impl RawRecord {
    /// Copies a record librdkafka lends (a few `memcpy`s into `chunks`).
    pub(crate) fn copy(record: &impl lent::LentRecord, chunks: &mut Chunks) -> CopiedRecord {
        let key = record.key();
        let buf = chunks.room(META_ROOM + key.map_or(0, <[u8]>::len));
        put_part(buf, key);
        record.for_each_header(|name, value| {
            put_part(buf, Some(name));
            put_part(buf, Some(value));
        });
        let meta = chunks.split();
        let payload = record.payload();
        let payload = chunks.bytes(payload.len(), |buf| buf.extend_from_slice(payload));
        CopiedRecord {
            partition: record.partition(),
            offset: record.offset(),
            key_hash: key.map(key_hash),
            record: RawRecord { meta, payload },
        }
    }

    /// The message: id from the `x-message-id` header (else `topic/partition/offset`), the
    /// other headers, key and header values as (lossy) UTF-8.
    pub(crate) fn message(&self, topic: &str, partition: i32, offset: i64) -> Message {
        let mut meta = &self.meta[..];
        let key = take_part(&mut meta).map(|key| String::from_utf8_lossy(key).into_owned());
        let mut id = None;
        let mut headers = BTreeMap::new();
        while !meta.is_empty() {
            let (Some(name), Some(value)) = (take_part(&mut meta), take_part(&mut meta)) else {
                break; // cannot happen: we encoded it
            };
            let value = String::from_utf8_lossy(value).into_owned();
            if name == MESSAGE_ID.as_bytes() {
                id = Some(value);
            } else {
                headers.insert(String::from_utf8_lossy(name).into_owned(), value);
            }
        }
        let id = id.unwrap_or_else(|| format!("{topic}/{partition}/{offset}"));
        Message::from_parts(id, key, headers, self.payload.clone())
    }

    /// A record with this key, headers and payload, as [`RawRecord::copy`] would make it.
    #[cfg(test)]
    pub(crate) fn encode(key: Option<&[u8]>, headers: &[(&str, &[u8])], payload: &[u8]) -> Self {
        let mut chunks = Chunks::default();
        let meta = chunks.bytes(1024, |buf| {
            put_part(buf, key);
            for (name, value) in headers {
                put_part(buf, Some(name.as_bytes()));
                put_part(buf, Some(value));
            }
        });
        let payload = chunks.bytes(payload.len(), |buf| buf.extend_from_slice(payload));
        RawRecord { meta, payload }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;

    #[test]
    fn raw_records_rebuild_the_message() {
        let record = RawRecord::encode(
            Some(b"k1"),
            &[
                ("traceparent", b"00-ab"),
                (MESSAGE_ID, b"id-7"),
                ("empty", b""),
            ],
            b"payload",
        );
        let message = record.message("t", 3, 42);
        assert_eq!(message.id(), "id-7");
        assert_eq!(message.key(), Some("k1"));
        assert_eq!(message.header("traceparent"), Some("00-ab"));
        assert_eq!(message.header("empty"), Some(""));
        assert_eq!(message.headers().len(), 2, "the id is not a header");
        assert_eq!(&message.payload()[..], b"payload");
        // Built again (requeue, dead letter): the same message.
        assert_eq!(record.message("t", 3, 42), message);
    }

    #[test]
    fn raw_records_without_id_key_or_payload() {
        let message = RawRecord::encode(None, &[], b"").message("t", 3, 42);
        assert_eq!(message.id(), "t/3/42");
        assert_eq!(message.key(), None);
        assert!(message.headers().is_empty() && message.payload().is_empty());
        let message = RawRecord::encode(Some(b""), &[], b"").message("t", 0, 0);
        assert_eq!(message.key(), Some(""), "an empty key is not a missing key");
    }

    #[test]
    fn published_headers_carry_the_id_first() {
        let message = Message::new("p")
            .with_id("id-9")
            .with_header("b", "2")
            .with_header("a", "1");
        let headers = record_headers(&message);
        let pairs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|h| (h.key, h.value.unwrap_or_default()))
            .collect();
        assert_eq!(
            pairs,
            [(MESSAGE_ID, &b"id-9"[..]), ("a", b"1"), ("b", b"2")],
            "the id, then the message's headers"
        );
        // What the producer sends, the consumer reads back as the same message.
        let back = RawRecord::encode(None, &pairs, b"p").message("t", 0, 0);
        assert_eq!(back, message);
    }

    #[test]
    fn small_parts_share_a_chunk_and_large_ones_do_not() {
        let mut chunks = Chunks::default();
        let a = chunks.bytes(3, |buf| buf.extend_from_slice(b"abc"));
        let b = chunks.bytes(2, |buf| buf.extend_from_slice(b"de"));
        assert_eq!((&a[..], &b[..]), (&b"abc"[..], &b"de"[..]));
        assert_eq!(a.as_ptr().wrapping_add(3), b.as_ptr(), "one chunk");
        let large = vec![1u8; SHARED_MAX + 1];
        let c = chunks.bytes(large.len(), |buf| buf.extend_from_slice(&large));
        assert_eq!(&c[..], &large[..]);
        let d = chunks.bytes(1, |buf| buf.extend_from_slice(b"f"));
        assert_eq!(b.as_ptr().wrapping_add(2), d.as_ptr(), "the chunk goes on");
        // Writing more than the room asked for grows the chunk; earlier parts keep their bytes.
        let big = vec![2u8; CHUNK + 10];
        chunks.room(4).extend_from_slice(&big);
        let e = chunks.split();
        assert_eq!((&e[..], &d[..], &a[..]), (&big[..], &b"f"[..], &b"abc"[..]));
    }
}
