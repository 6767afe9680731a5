-- Trained zstd dictionaries, versioned by id: a payload compressed with one names its id
-- in its header, so rows are never changed nor deleted. `content` is the dictionary,
-- sealed by the key ring's key `key_id` when the store encrypts (nonce, then the sealed
-- bytes); `sha256` is the plain dictionary's hash, checked on every load.
CREATE TABLE compression_dictionaries (
    id         bigint      NOT NULL PRIMARY KEY CHECK (id > 0),
    key_id     text,
    content    bytea       NOT NULL,
    sha256     bytea       NOT NULL,
    samples    bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
