//! The repository trait implementations for [`crate::Store`], one module per concern.

mod idempotency;
mod lifecycle;
mod outbox;
mod products;
mod users;

/// A keyset page from `rows`, which were read ordered by id with a limit of `limit + 1`: the
/// extra row only says that there is a next page, which starts after the last row kept.
fn keyset_page<M, T>(
    mut rows: Vec<M>,
    limit: u32,
    id: impl Fn(&M) -> i64,
    convert: impl Fn(M) -> Result<T, mq_core::domain::RepoError>,
) -> Result<mq_core::domain::Page<T>, mq_core::domain::RepoError> {
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(id)
    } else {
        None
    };
    let items = rows.into_iter().map(convert).collect::<Result<_, _>>()?;
    Ok(mq_core::domain::Page { items, next })
}
