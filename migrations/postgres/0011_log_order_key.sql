-- The log's order is the primary key (issue 23, section 1). Readers of the global log,
-- checkpoints and the outbox already walk `events` in (transaction_id, position) order
-- through `events_commit_order`; no lookup needs the position alone any more (`query`
-- and the newest events come in log order, a re-encryption finds an event by its stream
-- and version, retention removes by the key). So the position-only primary key goes, and
-- with it an index entry per event (about 23 bytes an event on disk) and one index insert
-- per append. The tenant index follows the log order too, so that `query` by tenant reads
-- it in order.
--
-- The new key is built from the table, under an exclusive lock: readers and writers wait
-- for it (BENCHMARKS.md, "Upgrading in place", gives the time per million events).
ALTER TABLE events
    DROP CONSTRAINT events_pkey,
    ADD CONSTRAINT events_pkey PRIMARY KEY (transaction_id, position);
DROP INDEX events_commit_order;

DROP INDEX events_tenant;
CREATE INDEX events_tenant ON events (tenant_id, transaction_id, position)
    WHERE tenant_id IS NOT NULL;
