-- The append's guard reads the stream's row once per event instead of twice (issue 23,
-- section 3). `events_guard` checked the stream's status and its version in two
-- statements, each finding the row through `streams_stream_key` and then the table; one
-- statement now reads both, and says which check failed in the same words as before
-- (`chronicle: …`, which the append maps to its outcome). A key that names no stream row
-- is refused too, as a `NULL` key always was ("no such stream"). `events_advance_stream`
-- is unchanged. BENCHMARKS.md, "SQLite's guard in one probe", gives the append before and
-- after.

DROP TRIGGER IF EXISTS events_guard;

CREATE TRIGGER events_guard BEFORE INSERT ON events
BEGIN
    SELECT CASE
               WHEN s.status IS NULL THEN RAISE(ABORT, 'chronicle: no such stream')
               WHEN s.status <> 0 THEN RAISE(ABORT, 'chronicle: stream deleted')
               WHEN s.version + 1 <> NEW.version
                   THEN RAISE(ABORT, 'chronicle: wrong expected version')
           END
    FROM (SELECT 1) LEFT JOIN streams AS s ON s.stream_key = NEW.stream_key;
END;
