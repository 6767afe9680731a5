-- Retention policies: the store's default (kind 0, name ''), per category (kind 1) and per
-- stream (kind 2). The policy is chronicle's JSON (max age in milliseconds, max count,
-- truncate-before version, snapshot-aware flag).
CREATE TABLE retention_policies (
    kind       INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    policy     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL, -- microseconds since the Unix epoch
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
