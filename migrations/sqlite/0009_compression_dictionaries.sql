-- Trained zstd dictionaries, versioned by id: a payload compressed with one names its id
-- in its header, so rows are never changed nor deleted. `content` is the dictionary,
-- sealed by the key ring's key `key_id` when the store encrypts (nonce, then the sealed
-- bytes); `sha256` is the plain dictionary's hash, checked on every load.
CREATE TABLE compression_dictionaries (
    id         INTEGER NOT NULL PRIMARY KEY,
    key_id     TEXT,
    content    BLOB    NOT NULL,
    sha256     BLOB    NOT NULL,
    samples    INTEGER NOT NULL,
    created_at INTEGER NOT NULL -- microseconds since the Unix epoch
);
