-- Retention policies: the store's default (kind 0, name ''), per category (kind 1) and per
-- stream (kind 2). The policy is chronicle's JSON (max age in milliseconds, max count,
-- truncate-before version, snapshot-aware flag).
CREATE TABLE retention_policies (
    kind       integer     NOT NULL,
    name       text        COLLATE "C" NOT NULL,
    policy     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
);
