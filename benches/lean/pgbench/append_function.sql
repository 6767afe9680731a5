-- The append without the stream-row write, safe: `append_after_lock` (setup.sql).
\set acc random(1, 200)
SELECT * FROM append_after_lock('acc-' || :client_id || '-' || :acc, (lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || substr(md5(random()::text), 1, 20))::uuid, convert_to(md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), 'UTF8'));
