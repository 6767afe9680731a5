-- Per-stream data keys (crypto-shredding): each stream's key, wrapped (encrypted) by the
-- key ring's key `key_id`. Forgetting a stream clears `key_id` and `wrapped` for good and
-- keeps the row, so the stream cannot get a new key.
CREATE TABLE stream_keys (
    stream_id    text        COLLATE "C" NOT NULL PRIMARY KEY,
    key_id       text,
    wrapped      bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    forgotten_at timestamptz
);

-- Rotation finds the keys still wrapped by a retired ring key.
CREATE INDEX stream_keys_by_ring_key ON stream_keys (key_id) WHERE key_id IS NOT NULL;
