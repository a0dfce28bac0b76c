-- The same two-insert transaction as product_pipeline_store::Store::create_product (product + outbox row).
-- Run by benches/pgbench.sh; needs `-D uid=<an existing users.id>` and the store's tables on
-- the search_path.
BEGIN;
INSERT INTO products (user_id, product_name, product_description, product_images, product_price,
                      compressed_product_images, status, image_errors, created_at, updated_at)
VALUES (:uid::bigint, 'bench product', 'made by pgbench', '["https://example.com/a.jpg"]', 12.34,
        '[]', 'pending', '[]', now(), now())
RETURNING id \gset
INSERT INTO outbox (topic, message_key, headers, payload, created_at, attempts)
VALUES ('products.created', :id::text, '{"message-id": "pgbench"}',
        jsonb_build_object('product_id', :id::bigint), now(), 0);
COMMIT;
