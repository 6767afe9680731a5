-- The ceiling: the minimal table.
\set acc random(1, 200)
INSERT INTO minimal (stream_id, version, payload) VALUES ('acc-' || :client_id || '-' || :acc, (SELECT coalesce(max(version), 0) + 1 FROM minimal WHERE stream_id = 'acc-' || :client_id || '-' || :acc), jsonb_build_object('d', md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text)));
