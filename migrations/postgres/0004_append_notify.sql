-- Wake-ups across processes: every statement that inserts events notifies the channel
-- `chronicle_appends` with the store's schema as payload (delivered at commit, merged
-- within a transaction). Projection runners LISTEN to it and poll as a fallback.
CREATE FUNCTION chronicle_notify_append() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chronicle_appends', current_schema());
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify_append AFTER INSERT ON events
FOR EACH STATEMENT EXECUTE FUNCTION chronicle_notify_append();
