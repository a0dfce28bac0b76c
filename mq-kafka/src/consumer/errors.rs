//! The errors waiting for a subscription's stream: a bounded queue, so a broker that keeps
//! failing while nobody polls the stream cannot grow it without end.

use std::collections::VecDeque;

use mq_core::Error;

/// Subscription errors kept for the stream; older ones are dropped.
const MAX_QUEUED_ERRORS: usize = 16;

/// Queues an error for the stream, dropping the oldest beyond [`MAX_QUEUED_ERRORS`].
pub(super) fn push_error(errors: &mut VecDeque<Error>, error: Error) {
    if errors.len() >= MAX_QUEUED_ERRORS {
        errors.pop_front();
    }
    errors.push_back(error);
}
