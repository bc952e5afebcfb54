//! The collector's background loops, each started by [`Daemon::start`](crate::daemon::Daemon::start)
//! and ended by its shutdown through the shared `stop` notification: the device
//! assignments, the ledger follower, decision-log anchoring, CRL refresh and the bedside
//! readers. (The batcher and the forwarder live in their own modules.)
//!
//! Each loop that can fail repeatedly logs when a failure starts and when it ends, not
//! once per attempt: an outage of hours must not write a line every few seconds.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::B256;
use tokio::sync::Notify;
use wardseal_contracts::{AnyBackend, EventFollower, Ledger};
use wardseal_core::identity::SubjectId;
use wardseal_net::crl::CrlFetcher;
use wardseal_net::server::{ExpiredCrl, ServerTls};

use crate::batcher::{Card, CardSlots};
use crate::daemon::read_assignments;
use crate::decision_log;
use crate::error::Error;
use crate::forwarder::{self, StorageClient};
use crate::ingest::Replica;
use crate::metrics::Metrics;
use crate::spool::Spool;

/// Sleeps `every`; returns `true` when `stop` was notified first.
async fn stopped_during(stop: &Notify, every: Duration) -> bool {
    tokio::select! {
        () = stop.notified() => true,
        () = tokio::time::sleep(every) => false,
    }
}

/// Keeps the device-to-patient assignments current: from `file` when one is configured,
/// otherwise from storage's API, every `every`; binds waiting readings to their patients.
/// The last assignments stay in force while fetching fails. Readings that wait longer
/// than `unassigned_bound` for an assignment raise the technical alert
/// ([`forwarder::check_unassigned`]).
#[expect(
    clippy::too_many_arguments,
    reason = "one spawned loop's inputs, named at its one call site"
)]
pub(crate) async fn refresh_assignments(
    spool: Spool,
    replica: Arc<Replica>,
    storage: Arc<StorageClient>,
    file: Option<std::path::PathBuf>,
    ward: SubjectId,
    every: Duration,
    metrics: Arc<Metrics>,
    unassigned_bound: Duration,
    alerts: crate::alerts::Alerts,
    stop: Arc<Notify>,
) {
    let mut failing = false;
    // When the readings waiting for an assignment started waiting, while alerted.
    let mut unassigned = None;
    loop {
        let fetched = match &file {
            Some(path) => read_assignments(path).map_err(Error::from),
            None => storage.assignments(&ward).await.map_err(Error::from),
        };
        if fetched.is_ok() && failing {
            tracing::info!("assignments can be fetched again");
        }
        match fetched {
            Ok(assignments) => {
                failing = false;
                if let Err(error) =
                    forwarder::apply_assignments(&spool, &replica, &assignments).await
                {
                    tracing::error!(%error, "binding assignments failed");
                }
                if let Err(error) = forwarder::check_unassigned(
                    &spool,
                    &metrics,
                    unassigned_bound,
                    &alerts,
                    &mut unassigned,
                )
                .await
                {
                    tracing::error!(%error, "counting the readings without an assignment failed");
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(
                        %error,
                        retry_every = ?every,
                        "fetching the assignments failed; keeping the last ones"
                    );
                }
                failing = true;
            }
        }
        if stopped_during(&stop, every).await {
            return;
        }
    }
}

/// Applies the ledger's rule and registry events to `replica` every `every`.
pub(crate) async fn follow_ledger(
    replica: Arc<Replica>,
    mut follower: EventFollower<AnyBackend>,
    every: Duration,
    stop: Arc<Notify>,
) {
    loop {
        match follower.poll().await {
            Ok(events) => {
                for event in events {
                    replica.apply(&event.event);
                }
            }
            Err(error) => tracing::warn!(%error, "following the ledger failed"),
        }
        if stopped_during(&stop, every).await {
            return;
        }
    }
}

/// Anchors the decision log `log` on the ledger every `every` and reports the anchoring
/// lag.
pub(crate) async fn anchor_decisions(
    spool: Spool,
    metrics: Arc<Metrics>,
    ledger: Ledger<AnyBackend>,
    log: B256,
    every: Duration,
    stop: Arc<Notify>,
) {
    loop {
        if stopped_during(&stop, every).await {
            return;
        }
        if let Err(error) = decision_log::anchor_once(&spool, &ledger, log, 1_000_000).await {
            tracing::warn!(%error, "anchoring the decision log failed");
        }
        if let Ok(lag) = decision_log::anchor_lag_micros(&spool).await {
            metrics.set_anchor_lag_micros(lag);
        }
    }
}

/// Every `every`: re-reads the CRL files, or fetches the CRL URLs, into `tls`; the last
/// good CRL of each source stays in force. Reports failures and an expired CRL in the
/// metrics and the log.
pub(crate) async fn refresh_crls(
    tls: Arc<ServerTls>,
    mut fetcher: CrlFetcher,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: Arc<Notify>,
) {
    let mut failing = false;
    let mut expired = false;
    loop {
        if stopped_during(&stop, every).await {
            return;
        }
        let failures = if fetcher.urls().is_empty() {
            tls.reload()
                .err()
                .map(|error| error.to_string())
                .into_iter()
                .collect()
        } else {
            fetcher
                .refresh(&tls)
                .await
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        metrics
            .crl_fetch_failures
            .inc_by(u64::try_from(failures.len()).unwrap_or(u64::MAX));
        match (failing, failures.is_empty()) {
            (false, false) => tracing::warn!(
                failures = failures.join("; "),
                retry_every = ?every,
                "CRL refresh failed, keeping the last good CRLs"
            ),
            (true, true) => tracing::info!("CRL refresh works again"),
            _ => {}
        }
        failing = !failures.is_empty();
        let now_expired = tls.expired_crl(std::time::SystemTime::now());
        metrics.crl_expired.set(i64::from(now_expired.is_some()));
        match (&now_expired, expired) {
            (Some(error), false) => tracing::warn!(
                %error,
                consequence = match tls.settings().expired_crl {
                    ExpiredCrl::Refuse => "expired_crl = \"refuse\": every device is refused",
                    ExpiredCrl::Warn => "expired_crl = \"warn\": its revocations stay in force",
                },
                "a CRL in force is past its nextUpdate"
            ),
            (None, true) => tracing::info!("the CRLs are current again"),
            _ => {}
        }
        expired = now_expired.is_some();
    }
}

/// Follows the bedside readers: a card inserted in a patient's reader makes their token
/// present (pending readings get signed), a card removed makes it absent (readings wait
/// in the spool). One warning, not a loop of them, if pcscd goes away.
pub(crate) async fn watch_readers(
    mut watcher: wardseal_card::watcher::CardWatcher,
    bedside: Vec<(String, SubjectId, Card)>,
    slots: Arc<CardSlots>,
    metrics: Arc<Metrics>,
    stop: Arc<Notify>,
) {
    use futures_core::Stream as _;
    use wardseal_card::watcher::CardEvent;
    loop {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut watcher).poll_next(cx));
        let event = tokio::select! {
            () = stop.notified() => return,
            event = next => event,
        };
        let (reader, present) = match event {
            Some(Ok(CardEvent::CardInserted { reader, .. })) => (reader, true),
            Some(Ok(CardEvent::CardRemoved { reader } | CardEvent::ReaderRemoved { reader })) => {
                (reader, false)
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                tracing::warn!(
                    %error,
                    "watching the bedside readers failed; cards keep their last state"
                );
                stop.notified().await;
                return;
            }
            None => return,
        };
        for (_, patient, card) in bedside.iter().filter(|(r, _, _)| *r == reader) {
            if present {
                slots.insert(patient.clone(), card.clone());
                tracing::info!(%patient, reader, "card inserted");
            } else {
                slots.remove(patient);
                tracing::info!(%patient, reader, "card removed");
            }
        }
        metrics
            .cards_present
            .set(i64::try_from(slots.len()).unwrap_or(i64::MAX));
    }
}
