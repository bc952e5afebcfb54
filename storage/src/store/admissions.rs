//! Admissions, device assignments and staff assignments (and staff accounts).

use alloy::primitives::Address;
use wardseal_core::identity::SubjectId;

use super::{Store, column, now_micros};
use crate::error::Error;

impl Store {
    /// The device assignments of a patient: (device, since, until).
    pub async fn patient_devices(
        &self,
        patient: &str,
    ) -> Result<Vec<(String, i64, Option<i64>)>, Error> {
        let rows =
            sqlx::query("SELECT device, since, until FROM device_assignments WHERE patient = $1")
                .bind(patient)
                .fetch_all(&self.pool)
                .await
                .map_err(|error| Error::database("read device assignments", error))?;
        rows.into_iter()
            .map(|row| -> Result<_, Error> {
                Ok((column(&row, 0)?, column(&row, 1)?, column(&row, 2)?))
            })
            .collect()
    }

    /// Admits a patient to a ward, with the account the patient grants consent from.
    pub async fn admit(
        &self,
        patient: &SubjectId,
        ward: &str,
        room: &str,
        bed: &str,
        account: Option<Address>,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO admissions (patient, ward, room, bed, account, admitted_at, discharged_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) \
             ON CONFLICT (patient) DO UPDATE SET ward = $2, room = $3, bed = $4, account = $5, \
             admitted_at = $6, discharged_at = NULL",
        )
        .bind(patient.as_str())
        .bind(ward)
        .bind(room)
        .bind(bed)
        .bind(account.map(|account| account.to_vec()))
        .bind(now_micros())
        .execute(&self.pool)
        .await
        .map_err(|error| Error::database("admit the patient", error))?;
        Ok(())
    }

    /// The ward of an admitted (not discharged) patient.
    pub async fn admission(
        &self,
        patient: &str,
    ) -> Result<Option<(String, Option<Vec<u8>>)>, Error> {
        let row = sqlx::query(
            "SELECT ward, account FROM admissions WHERE patient = $1 AND discharged_at IS NULL",
        )
        .bind(patient)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Error::database("read the admission", error))?;
        row.map(|row| -> Result<_, Error> { Ok((column(&row, 0)?, column(&row, 1)?)) })
            .transpose()
    }

    /// Assigns a device to an admitted patient from `since` (µs), ending its other
    /// assignments.
    pub async fn assign_device(
        &self,
        device: &str,
        patient: &str,
        since: i64,
    ) -> Result<(), Error> {
        let Some((ward, _)) = self.admission(patient).await? else {
            return Err(Error::NotFound(format!("admitted patient {patient}")));
        };
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|e| Error::database("begin", e))?;
        sqlx::query("UPDATE device_assignments SET until = $1 WHERE device = $2 AND until IS NULL")
            .bind(since)
            .bind(device)
            .execute(&mut *transaction)
            .await
            .map_err(|error| Error::database("end the device's assignment", error))?;
        sqlx::query("INSERT INTO device_assignments (device, patient, ward, since, until) VALUES ($1, $2, $3, $4, NULL)")
            .bind(device)
            .bind(patient)
            .bind(ward)
            .bind(since)
            .execute(&mut *transaction)
            .await
            .map_err(|error| Error::database("assign the device", error))?;
        transaction
            .commit()
            .await
            .map_err(|e| Error::database("commit", e))?;
        Ok(())
    }

    /// Assigns a staff member (doctor, nurse) to an admitted patient.
    pub async fn assign_staff(
        &self,
        staff: &SubjectId,
        patient: &SubjectId,
        duty: &str,
    ) -> Result<(), Error> {
        if self.admission(patient.as_str()).await?.is_none() {
            return Err(Error::NotFound(format!("admitted patient {patient}")));
        }
        sqlx::query("INSERT INTO staff_assignments (staff, patient, duty, since, until) VALUES ($1, $2, $3, $4, NULL)")
            .bind(staff.as_str())
            .bind(patient.as_str())
            .bind(duty)
            .bind(now_micros())
            .execute(&self.pool)
            .await
            .map_err(|error| Error::database("assign the staff member", error))?;
        Ok(())
    }

    /// Records the Ethereum account a staff member or lab holds consent under.
    pub async fn set_staff_account(
        &self,
        staff: &SubjectId,
        account: Address,
    ) -> Result<(), Error> {
        sqlx::query("INSERT INTO staff_accounts (staff, account) VALUES ($1, $2) ON CONFLICT (staff) DO UPDATE SET account = $2")
            .bind(staff.as_str())
            .bind(account.to_vec())
            .execute(&self.pool)
            .await
            .map_err(|error| Error::database("record the staff account", error))?;
        Ok(())
    }

    /// The account of a staff member, if recorded.
    pub async fn staff_account(&self, staff: &str) -> Result<Option<Vec<u8>>, Error> {
        sqlx::query_scalar("SELECT account FROM staff_accounts WHERE staff = $1")
            .bind(staff)
            .fetch_optional(&self.pool)
            .await
            .map_err(|error| Error::database("read the staff account", error))
    }

    /// Whether a staff member is currently assigned to a patient.
    pub async fn staff_assigned(&self, staff: &str, patient: &str) -> Result<bool, Error> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM staff_assignments s JOIN admissions a ON a.patient = s.patient \
             WHERE s.staff = $1 AND s.patient = $2 AND s.until IS NULL AND a.discharged_at IS NULL",
        )
        .bind(staff)
        .bind(patient)
        .fetch_one(&self.pool)
        .await
        .map_err(|error| Error::database("check the staff assignment", error))?;
        Ok(count > 0)
    }

    /// Discharges a patient: ends the admission and every assignment.
    pub async fn discharge(&self, patient: &SubjectId) -> Result<(), Error> {
        let patient = patient.as_str();
        let now = now_micros();
        let mut transaction = self
            .pool
            .begin()
            .await
            .map_err(|e| Error::database("begin", e))?;
        let done = sqlx::query(
            "UPDATE admissions SET discharged_at = $1 WHERE patient = $2 AND discharged_at IS NULL",
        )
        .bind(now)
        .bind(patient)
        .execute(&mut *transaction)
        .await
        .map_err(|error| Error::database("discharge", error))?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("admitted patient {patient}")));
        }
        for table in ["device_assignments", "staff_assignments"] {
            sqlx::query(&format!(
                "UPDATE {table} SET until = $1 WHERE patient = $2 AND until IS NULL"
            ))
            .bind(now)
            .bind(patient)
            .execute(&mut *transaction)
            .await
            .map_err(|error| Error::database("end assignments", error))?;
        }
        transaction
            .commit()
            .await
            .map_err(|e| Error::database("commit", e))?;
        Ok(())
    }

    /// A ward's current device assignments: (device, patient, since).
    pub async fn ward_devices(&self, ward: &str) -> Result<Vec<(String, String, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT device, patient, since FROM device_assignments WHERE ward = $1 AND until IS NULL ORDER BY device",
        )
        .bind(ward)
        .fetch_all(&self.pool)
        .await
        .map_err(|error| Error::database("read the ward's assignments", error))?;
        rows.into_iter()
            .map(|row| -> Result<_, Error> {
                Ok((column(&row, 0)?, column(&row, 1)?, column(&row, 2)?))
            })
            .collect()
    }
}
