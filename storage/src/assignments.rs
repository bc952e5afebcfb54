//! The ward's device assignments as collectors fetch them
//! (`GET /v1/wards/{ward}/assignments`): current ones and those that ended recently, each
//! with its interval, so a collector binds every reading to the assignment valid at its
//! measurement time (the rule [`crate::ingest`] checks), not to whatever holds now.

use sqlx::Row as _;

use crate::error::Error;
use crate::store::Store;

/// How long an ended assignment is still listed: readings measured before it ended may
/// arrive at the collector late (a device offline, a collector restarted).
pub const ENDED_LISTED_MICROS: i64 = 24 * 3_600_000_000;

/// One assignment row: device (pure identity URI), patient, since, until (µs).
pub type AssignmentRow = (String, String, i64, Option<i64>);

/// `ward`'s assignments that hold now or ended after `ended_after` (µs), by device.
pub async fn ward_assignments(
    store: &Store,
    ward: &str,
    ended_after: i64,
) -> Result<Vec<AssignmentRow>, Error> {
    let rows = sqlx::query(
        "SELECT device, patient, since, until FROM device_assignments \
         WHERE ward = $1 AND (until IS NULL OR until > $2) ORDER BY device, since",
    )
    .bind(ward)
    .bind(ended_after)
    .fetch_all(store.pool())
    .await
    .map_err(|error| Error::database("read the ward's assignments", error))?;
    rows.into_iter()
        .map(|row| {
            let decode = |error| Error::database("read the ward's assignments", error);
            Ok((
                row.try_get(0).map_err(decode)?,
                row.try_get(1).map_err(decode)?,
                row.try_get(2).map_err(decode)?,
                row.try_get(3).map_err(decode)?,
            ))
        })
        .collect()
}
