//! The reads SQLite and PostgreSQL share, written once over a [`Dialect`]: streams, a
//! stream's events (whole, narrow, and the start of a load), events by id and by query,
//! snapshots, checkpoints, the log's last position and the ping. Each runs on the pool
//! the backend reads with; the statements differ only by the dialect's fragments and
//! row decoders. The log window stays each backend's own (see `Dialect`).

use std::ops::RangeInclusive;

use sqlx::{Database, Pool, QueryBuilder};
use uuid::Uuid;

use super::dialect::sql_impl;
use super::rows::snapshot_columns;
use super::{
    StartRow, cut_at_budget, push_event_filter, push_stream_list_filter, push_version_range,
    replayed_from_row, start_row, stream_start, to_i64, to_u64,
};
use crate::error::{Error, Result};
use crate::read::{EventParts, EventQuery, LogPosition};
use crate::snapshot::SnapshotInfo;
use crate::store::backend::{
    ReplayedEvent, StoredEvent, StoredSnapshot, StoredStream, StreamStart, WindowLimit,
};
use crate::stream::{Direction, StreamId, StreamListQuery};

/// The newest snapshot of a stream at or below a version.
const LATEST_SNAPSHOT: &str = "SELECT version, schema_version, payload, created_at FROM snapshots \
     WHERE stream_id = $1 AND version <= $2 ORDER BY version DESC LIMIT 1";

/// A SQL store's pool (SQLite's reader or writer, PostgreSQL's pool) seen through its
/// dialect: the statements written once are methods on it, here (the reads), in
/// `keys_sql` and in `retention_sql`.
#[derive(Debug)]
pub(crate) struct Sql<'p, D: Database>(pub(crate) &'p Pool<D>);

impl<D: Database> Clone for Sql<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D: Database> Copy for Sql<'_, D> {}

sql_impl! {
    impl<D> Sql<'_, D> {
        /// The stream's row.
        pub(crate) async fn stream_info(self, stream: &StreamId) -> Result<Option<StoredStream>> {
            sqlx::query(D::statements().stream_info.as_str())
                .bind(stream.as_str())
                .try_map(|row: D::Row| D::stream_row(&row))
                .fetch_optional(self.0)
                .await
                .map_err(|error| Error::from_sqlx("stream_info", error))
        }

        /// A page of the streams `list` asks for.
        pub(crate) async fn list_streams(self, list: &StreamListQuery) -> Result<Vec<StoredStream>> {
            let mut query = QueryBuilder::<D>::new(D::statements().list_streams.as_str());
            push_stream_list_filter(&mut query, list);
            query
                .build()
                .try_map(|row: D::Row| D::stream_row(&row))
                .fetch_all(self.0)
                .await
                .map_err(|error| Error::from_sqlx("list_streams", error))
        }

        /// The events of `stream` with versions in `versions`, in `direction`'s order, within
        /// `limit` (rows are read one by one, so the byte budget stops the statement).
        pub(crate) async fn read_stream(
            self,
            stream: &StreamId,
            versions: RangeInclusive<u64>,
            direction: Direction,
            limit: WindowLimit,
        ) -> Result<Vec<StoredEvent>> {
            let mut query = QueryBuilder::<D>::new(D::statements().events.as_str());
            push_version_range(&mut query, stream, &versions, direction, limit.events);
            let rows = query
                .build()
                .try_map(|row: D::Row| D::event_row(&row, EventParts::ALL))
                .fetch(self.0);
            cut_at_budget(rows, limit, |event| Some(event.payload.len()))
                .await
                .map_err(|error| Error::from_sqlx("read_stream", error))
        }

        /// The narrow rows of `stream` with versions in `versions`, oldest first, within
        /// `limit`.
        pub(crate) async fn replay_stream(
            self,
            stream: &StreamId,
            versions: RangeInclusive<u64>,
            limit: WindowLimit,
        ) -> Result<Vec<ReplayedEvent>> {
            let rows = sqlx::query(D::statements().replay_stream.as_str())
                .bind(stream.as_str())
                .bind(to_i64(*versions.start()))
                .bind(to_i64(*versions.end()))
                .bind(to_i64(limit.events as u64))
                .try_map(|row: D::Row| replayed_from_row(stream.as_str(), &row))
                .fetch(self.0);
            cut_at_budget(rows, limit, |event| Some(event.payload.len()))
                .await
                .map_err(|error| Error::from_sqlx("replay_stream", error))
        }

        /// The start of a load, in one statement: see `Backend::replay_start`.
        pub(crate) async fn replay_start(
            self,
            stream: &StreamId,
            max_version: u64,
            limit: WindowLimit,
        ) -> Result<Option<StreamStart>> {
            let rows = sqlx::query(D::statements().replay_start.as_str())
                .bind(stream.as_str())
                .bind(to_i64(max_version))
                .bind(to_i64(limit.events as u64))
                .try_map(|row: D::Row| start_row::<D>(stream.as_str(), &row))
                .fetch(self.0);
            let rows = cut_at_budget(rows, limit, StartRow::budget_bytes)
                .await
                .map_err(|error| Error::from_sqlx("replay_stream", error))?;
            stream_start(stream.as_str(), rows)
        }

        /// The events with these ids.
        pub(crate) async fn events_by_id(self, ids: &[Uuid]) -> Result<Vec<StoredEvent>> {
            let mut query = QueryBuilder::<D>::new(D::statements().events.as_str());
            query.push(" WHERE event_id");
            D::push_in_ids(&mut query, ids);
            query
                .build()
                .try_map(|row: D::Row| D::event_row(&row, EventParts::ALL))
                .fetch_all(self.0)
                .await
                .map_err(|error| Error::from_sqlx("event_by_id", error))
        }

        /// The events `filter` selects.
        pub(crate) async fn query(self, filter: &EventQuery) -> Result<Vec<StoredEvent>> {
            let mut query = QueryBuilder::<D>::new(D::statements().events.as_str());
            push_event_filter(&mut query, filter, D::LOG_ORDER, D::time_param);
            query
                .build()
                .try_map(|row: D::Row| D::event_row(&row, EventParts::ALL))
                .fetch_all(self.0)
                .await
                .map_err(|error| Error::from_sqlx("query", error))
        }

        /// The newest snapshot of `stream` at or below `max_version`.
        pub(crate) async fn latest_snapshot(
            self,
            stream: &StreamId,
            max_version: u64,
        ) -> Result<Option<StoredSnapshot>> {
            sqlx::query(LATEST_SNAPSHOT)
                .bind(stream.as_str())
                .bind(to_i64(max_version))
                .try_map(|row: D::Row| {
                    let (version, schema_version, payload, created_at) =
                        snapshot_columns::<D, _>(stream, &row)?;
                    Ok(StoredSnapshot {
                        version,
                        schema_version,
                        payload,
                        created_at,
                    })
                })
                .fetch_optional(self.0)
                .await
                .map_err(|error| Error::from_sqlx("latest_snapshot", error))
        }

        /// The snapshots of `stream`, newest first, with their stored sizes.
        pub(crate) async fn list_snapshots(self, stream: &StreamId) -> Result<Vec<SnapshotInfo>> {
            sqlx::query(D::statements().list_snapshots.as_str())
                .bind(stream.as_str())
                .try_map(|row: D::Row| {
                    let (version, schema_version, size, created_at) =
                        snapshot_columns::<D, i64>(stream, &row)?;
                    Ok(SnapshotInfo {
                        version,
                        schema_version,
                        stored_size: to_u64(size),
                        created_at,
                    })
                })
                .fetch_all(self.0)
                .await
                .map_err(|error| Error::from_sqlx("list_snapshots", error))
        }

        /// The checkpoint of the projection `name`.
        pub(crate) async fn checkpoint(self, name: &str) -> Result<Option<LogPosition>> {
            let row: Option<(i64, i64)> = sqlx::query_as(
                "SELECT commit_id, position FROM projection_checkpoints WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(self.0)
            .await
            .map_err(|error| Error::from_sqlx("checkpoint", error))?;
            row.map(|row| super::checkpoint(name, row))
                .transpose()
                .map_err(|error| Error::from_sqlx("checkpoint", error))
        }

        /// The position of the log's last event in log order ([`Dialect::LAST_COMMITTED`]:
        /// the highest but where PostgreSQL committed positions out of order); 0 for an
        /// empty log.
        pub(crate) async fn last_position(self) -> Result<u64> {
            let last: Option<(i64, i64)> = sqlx::query_as(D::LAST_COMMITTED)
                .fetch_optional(self.0)
                .await
                .map_err(|error| Error::from_sqlx("last_position", error))?;
            Ok(last.map_or(0, |(_, position)| to_u64(position)))
        }

        /// A statement's round trip.
        pub(crate) async fn ping(self) -> Result<()> {
            sqlx::query("SELECT 1")
                .execute(self.0)
                .await
                .map_err(|error| Error::from_sqlx("ping", error))?;
            Ok(())
        }
    }
}
