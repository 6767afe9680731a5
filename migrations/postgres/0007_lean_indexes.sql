-- Leaner indexes on `events`: they were most of an event's bytes on disk (the peers
-- benchmark's storage workload measured 265 of 419 bytes an event in six indexes).
-- Building the new indexes locks out appends for as long as they take on a large log.

-- The type index held (event_type, position): every key distinct, and inserts in as many
-- places as there are types, leaving pages half full (86 bytes an event). Log reads
-- filtered by type scan windows in commit order and never used it; `Store::query` by type
-- still finds the type's rows through an index on the type alone, whose equal keys
-- PostgreSQL stores once per page (about 11 bytes an event).
DROP INDEX events_type;
CREATE INDEX events_type ON events (event_type);

-- `recorded_at` is the appending transaction's start, so it rises with the position
-- nearly everywhere: a BRIN index (a few pages for millions of events) narrows a time
-- range to the blocks that can hold it.
DROP INDEX events_recorded_at;
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);
