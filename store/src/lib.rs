//! Database layer: sea-orm entities, migrations, repositories and the transactional outbox. (Filled by the store issue.)
