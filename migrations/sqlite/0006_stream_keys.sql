-- Per-stream data keys (crypto-shredding): each stream's key, wrapped (encrypted) by the
-- key ring's key `key_id`. Forgetting a stream clears `key_id` and `wrapped` for good and
-- keeps the row, so the stream cannot get a new key.
CREATE TABLE stream_keys (
    stream_id    TEXT    NOT NULL PRIMARY KEY,
    key_id       TEXT,
    wrapped      BLOB,
    created_at   INTEGER NOT NULL, -- microseconds since the Unix epoch
    forgotten_at INTEGER
) WITHOUT ROWID;

-- Rotation finds the keys still wrapped by a retired ring key.
CREATE INDEX stream_keys_by_ring_key ON stream_keys (key_id) WHERE key_id IS NOT NULL;
