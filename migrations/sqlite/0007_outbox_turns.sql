-- Ordered outbox handlers: a claim looks only at requests whose turn it is, so its cost
-- does not grow with the requests waiting behind them.
--
-- `ready` is 1 for a request that ordering lets run: every request of a handler not
-- ordered per stream, and, per (handler, stream) of an ordered one, the one request whose
-- turn it is (the running one, else the open one earliest in the log). The library moves
-- the turn when a request ends, goes dead or comes back, and when the processor creates
-- requests.
ALTER TABLE handler_requests ADD COLUMN ready INTEGER NOT NULL DEFAULT 1;

-- The turns of the requests open now, as claims saw them: not ready when an earlier open
-- request or a running one of the same handler and stream exists.
UPDATE handler_requests SET ready = 0
WHERE ordered AND state < 2 AND state <> 1 AND EXISTS (
    SELECT 1 FROM handler_requests e
    WHERE e.handler = handler_requests.handler AND e.stream_id = handler_requests.stream_id
      AND e.state < 2 AND e.id <> handler_requests.id
      AND (e.event_position < handler_requests.event_position OR e.state = 1));

-- Claims: the requests that may run, in priority, then log order.
DROP INDEX handler_requests_open;
CREATE INDEX handler_requests_ready ON handler_requests (priority, event_position)
    WHERE state < 2 AND ready = 1;
-- Ordered handlers: a stream's open requests in log order (the next turn) ...
DROP INDEX handler_requests_stream;
CREATE INDEX handler_requests_stream ON handler_requests (handler, stream_id, event_position)
    WHERE state < 2 AND ordered;
-- ... and whose turn it is.
CREATE INDEX handler_requests_turn ON handler_requests (handler, stream_id)
    WHERE state < 2 AND ready = 1 AND ordered;
