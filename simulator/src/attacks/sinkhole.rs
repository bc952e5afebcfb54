//! Sinkhole: the collector drops a patient's batch, reorders a signed batch's readings, or
//! alters a reading and has the patient's card re-sign the batch.

use super::outcome::Observed;
use super::{Attacker, Findings};
use crate::error::Error;

impl Attacker<'_> {
    pub(super) async fn sinkhole_drop(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let card = self.card()?;
        let tip = self.quiet_tip().await?;
        let dropped_readings = self.forged_readings(&["36.6"], findings)?;
        let dropped = self
            .seal_by_card(&card, tip.as_ref(), &dropped_readings, findings)
            .await?;
        let next_readings = self.forged_readings(&["36.7"], findings)?;
        let next = self
            .seal_by_card(&card, Some(&dropped.header.tip()), &next_readings, findings)
            .await?;
        findings.notes.push(format!(
            "batch {} dropped, batch {} delivered",
            dropped.header.sequence(),
            next.header.sequence()
        ));
        self.deliver(&next).await
    }

    pub(super) async fn sinkhole_reorder(
        &self,
        findings: &mut Findings,
    ) -> Result<Observed, Error> {
        let card = self.card()?;
        let tip = self.quiet_tip().await?;
        let readings = self.forged_readings(&["36.6", "36.7", "36.8"], findings)?;
        let mut submission = self
            .seal_by_card(&card, tip.as_ref(), &readings, findings)
            .await?;
        submission.readings.reverse();
        self.deliver(&submission).await
    }

    pub(super) async fn sinkhole_alter(&self, findings: &mut Findings) -> Result<Observed, Error> {
        let card = self.card()?;
        let tip = self.quiet_tip().await?;
        // Everything about this batch is genuine — the card's signature, the chain
        // place, the registered and assigned device — except that 50 °C is outside the rule's plausible range.
        let readings = self.forged_readings(&["36.6", "50"], findings)?;
        let submission = self
            .seal_by_card(&card, tip.as_ref(), &readings, findings)
            .await?;
        self.deliver(&submission).await
    }
}
