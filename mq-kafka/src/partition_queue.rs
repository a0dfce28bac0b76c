//! [`PartitionQueue`]: one assigned partition's fetched records, taken from librdkafka in
//! batches by the task that consumes them.
//!
//! rdkafka's own API hands out one record per `poll`, each wrapped in an event that is allocated,
//! reference-counted and destroyed on its own; it also needs the consumer in an `Arc` to split a
//! partition's queue off. The subscription wants neither: it splits each partition's queue off
//! while the partition is being assigned (before librdkafka starts fetching it) and drains it with
//! librdkafka's batch call, `rd_kafka_consume_batch_queue`. This module is the only `unsafe` code
//! of the crate; everything it hands out is borrowed for the length of one call.
//!
//! Only fetched records and per-partition errors arrive on a split queue: rebalances, commit
//! results and client errors stay on the consumer's main queue, which the driver thread polls.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::Notify;

/// Records taken from librdkafka per call: bounds the stack buffer and how long one drain
/// holds the subscription's lock.
pub(crate) const DRAIN_BATCH: usize = 64;

/// A partition's own fetch queue, split off the consumer queue, with a wake-up when it stops
/// being empty.
///
/// Must be dropped before the consumer it came from (the subscription keeps these only in the
/// partition state, which the driver clears before it closes the consumer).
pub(crate) struct PartitionQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// Leaked `Arc` passed to librdkafka as the callback's opaque pointer; reclaimed on drop.
    wake: *const Notify,
}

// SAFETY: librdkafka queues are thread-safe (every operation takes the queue's own lock), and
// `wake` points to a `Notify`, which is `Send + Sync`.
unsafe impl Send for PartitionQueue {}
// SAFETY: as above; `&PartitionQueue` only allows those thread-safe calls.
unsafe impl Sync for PartitionQueue {}

/// Called by librdkafka, under the queue's lock, when a record or error lands on the empty queue.
unsafe extern "C" fn queue_became_non_empty(_client: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the `wake` pointer of a live `PartitionQueue`: its `Drop` disables this
    // callback (under the same queue lock, so no call is running then) before it releases it.
    let wake = unsafe { &*(opaque as *const Notify) };
    wake.notify_waiters();
}

impl PartitionQueue {
    /// Splits `topic`/`partition` off `consumer`'s queue: from now on its fetched records wait
    /// here instead of in the consumer queue, and `wake` is notified whenever the queue stops
    /// being empty. `None` if librdkafka has no such partition handle (it creates one on demand,
    /// so only for a topic name it rejects).
    ///
    /// Call it before the partition is assigned: records fetched before the split still arrive
    /// through the consumer queue. The split survives later assignments of the same partition.
    pub(crate) fn split<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
        wake: Arc<Notify>,
    ) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        let client = consumer.client().native_ptr();
        // SAFETY: `client` is a live consumer handle and `topic` a NUL-terminated string; the
        // returned queue handle is ours to destroy (in `Drop`).
        let queue = NonNull::new(unsafe {
            rdsys::rd_kafka_queue_get_partition(client, topic.as_ptr(), partition)
        })?;
        let wake = Arc::into_raw(wake);
        // SAFETY: `queue` is live. Forwarding to null keeps the partition's records on its own
        // queue (librdkafka remembers that the application set it, so assignments keep it).
        // The callback's opaque pointer stays valid until `Drop` disables the callback.
        unsafe {
            rdsys::rd_kafka_queue_forward(queue.as_ptr(), ptr::null_mut());
            rdsys::rd_kafka_queue_cb_event_enable(
                queue.as_ptr(),
                Some(queue_became_non_empty),
                wake as *mut c_void,
            );
        }
        Some(Self { queue, wake })
    }

    /// Takes up to `max` (at most [`DRAIN_BATCH`]) waiting records without blocking and passes
    /// each to `each`, in offset order; returns how many were taken. A record is only valid
    /// during its call: librdkafka frees it right after.
    pub(crate) fn drain(&self, max: usize, mut each: impl FnMut(FetchedRecord<'_>)) -> usize {
        let mut batch = [ptr::null_mut::<rdsys::rd_kafka_message_t>(); DRAIN_BATCH];
        let max = max.min(DRAIN_BATCH);
        // SAFETY: `batch` has room for `max` pointers; timeout 0 never blocks.
        let taken = unsafe {
            rdsys::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, batch.as_mut_ptr(), max)
        };
        let taken = usize::try_from(taken).unwrap_or(0).min(max);
        // Frees every taken record, also if `each` panics half-way.
        let mut owned = TakenRecords {
            batch: &mut batch[..taken],
            next: 0,
        };
        while let Some(record) = owned.next_record() {
            each(record);
        }
        taken
    }
}

impl Drop for PartitionQueue {
    fn drop(&mut self) {
        // SAFETY: disabling takes the queue lock the callback runs under, so once it returns no
        // callback is running or will run; then the queue handle and the `Arc` can go.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(self.queue.as_ptr());
            drop(Arc::from_raw(self.wake));
        }
    }
}

/// The records of one `drain` call; each is destroyed once it has been handed out (or when this
/// is dropped).
struct TakenRecords<'a> {
    batch: &'a mut [*mut rdsys::rd_kafka_message_t],
    next: usize,
}

impl TakenRecords<'_> {
    fn next_record(&mut self) -> Option<FetchedRecord<'_>> {
        if self.next > 0 {
            self.destroy(self.next - 1);
        }
        let raw = *self.batch.get(self.next)?;
        self.next += 1;
        // SAFETY: librdkafka returned this pointer to a live message, which stays alive until
        // `destroy` (on the next call or in `Drop`), while the borrow of `self` lasts.
        NonNull::new(raw).map(|raw| FetchedRecord {
            raw: unsafe { raw.as_ref() },
        })
    }

    fn destroy(&mut self, index: usize) {
        let raw = std::mem::replace(&mut self.batch[index], ptr::null_mut());
        if !raw.is_null() {
            // SAFETY: a message librdkafka handed to us, destroyed once (the slot is now null).
            unsafe { rdsys::rd_kafka_message_destroy(raw) };
        }
    }
}

impl Drop for TakenRecords<'_> {
    fn drop(&mut self) {
        for index in 0..self.batch.len() {
            self.destroy(index);
        }
    }
}

/// A record (or a partition error) borrowed from librdkafka for one call.
pub(crate) struct FetchedRecord<'a> {
    raw: &'a rdsys::rd_kafka_message_t,
}

impl<'a> FetchedRecord<'a> {
    /// The error librdkafka reports in place of a record (e.g. an offset out of range).
    pub(crate) fn error(&self) -> Option<KafkaError> {
        (self.raw.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .then(|| KafkaError::MessageConsumption(RDKafkaErrorCode::from(self.raw.err)))
    }

    pub(crate) fn partition(&self) -> i32 {
        self.raw.partition
    }

    pub(crate) fn offset(&self) -> i64 {
        self.raw.offset
    }

    /// The key; `None` for a null key (an empty key is `Some(&[])`).
    pub(crate) fn key(&self) -> Option<&'a [u8]> {
        // SAFETY: librdkafka guarantees `key_len` readable bytes at a non-null `key`.
        unsafe { bytes(self.raw.key, self.raw.key_len) }
    }

    /// The payload; empty for a null payload.
    pub(crate) fn payload(&self) -> &'a [u8] {
        // SAFETY: as for the key.
        unsafe { bytes(self.raw.payload, self.raw.len) }.unwrap_or_default()
    }

    /// Calls `each(name, value)` for every header in order (a null value as `None`).
    pub(crate) fn for_each_header(&self, mut each: impl FnMut(&'a [u8], Option<&'a [u8]>)) {
        let mut headers = ptr::null_mut();
        // SAFETY: `raw` is a live message; the headers it returns live as long as it does.
        let found = unsafe { rdsys::rd_kafka_message_headers(self.raw, &mut headers) };
        if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return;
        }
        for index in 0.. {
            let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) =
                (ptr::null(), ptr::null(), 0);
            // SAFETY: `headers` is live; librdkafka fills the three out-pointers on success.
            let err = unsafe {
                rdsys::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
            };
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                return;
            }
            // SAFETY: header names are NUL-terminated; `size` bytes are readable at `value`.
            let (name, value) = unsafe { (CStr::from_ptr(name).to_bytes(), bytes(value, size)) };
            each(name, value);
        }
    }
}

/// `len` bytes at `data`, `None` for a null pointer.
///
/// # Safety
/// A non-null `data` must point to `len` readable bytes that outlive `'a`.
unsafe fn bytes<'a>(data: *const c_void, len: usize) -> Option<&'a [u8]> {
    if data.is_null() {
        return None;
    }
    if len == 0 {
        return Some(&[]);
    }
    // SAFETY: the caller's promise.
    Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}
