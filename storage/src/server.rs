//! The running storage server: the one start-up path the binary, the test suites and
//! the simulator share.
//!
//! [`Server::start`] opens the database, loads the TLS files, wraps the ledger in a
//! [`Chain`] (whose rule and registry replica follows the ledger's events), binds the
//! listener and starts serving, with the anchoring timer beside it. The handle reloads
//! the TLS files ([`Server::reload`], what SIGHUP does), anchors on demand
//! ([`Server::anchor_now`]) and stops everything ([`Server::shutdown`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use wardseal_contracts::{AnyBackend, Ledger};
use wardseal_net::serve::{ServeOptions, serve};
use wardseal_net::server::{ServerTls, ServerTlsSettings};

use crate::alerts::{AlertHub, EscalationPolicy, run_escalation};
use crate::api::Storage;
use crate::chain::Chain;
use crate::error::Error;
use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::store::{BatchAnchor, Store};

/// Everything storage is started from, apart from the ledger.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The database: `sqlite://PATH` (one 0600 file) or `postgres://…`.
    pub database: String,
    /// Where to listen; port 0 takes a free port ([`Server::local_addr`] tells which).
    pub listen: SocketAddr,
    /// The server certificate and key, the hospital CA bundle and the CRL files.
    pub tls: ServerTlsSettings,
    /// Time between anchors of the access log and of the batch log (the first right at
    /// start). `None`: no timer; entries are anchored by [`Server::anchor_now`] or the
    /// admin routes only.
    pub anchor_interval: Option<Duration>,
    /// How long [`Server::shutdown`] lets in-flight requests finish.
    pub drain_timeout: Duration,
    /// How long an alert may wait for acknowledgement, per priority, before it escalates.
    pub escalation: EscalationPolicy,
    /// How often the escalation task looks for overdue alerts.
    pub escalation_check: Duration,
    /// FHIR subscriptions: delivery retries and timeouts, websocket tokens.
    pub subscriptions: crate::subscriptions::SubscriptionOptions,
}

impl ServerConfig {
    /// A configuration with the production defaults: anchoring every 60 s, a 30 s drain.
    pub fn new(database: impl Into<String>, listen: SocketAddr, tls: ServerTlsSettings) -> Self {
        Self {
            database: database.into(),
            listen,
            tls,
            anchor_interval: Some(Duration::from_secs(60)),
            drain_timeout: ServeOptions::default().drain_timeout,
            escalation: EscalationPolicy::default(),
            escalation_check: Duration::from_secs(1),
            subscriptions: crate::subscriptions::SubscriptionOptions::default(),
        }
    }
}

/// What one anchoring round anchored.
#[derive(Debug, Clone, Default)]
pub struct AnchorRound {
    /// The access log's new root and how many entries it covers, if there were new ones.
    pub access_log: Option<(wardseal_core::hash::Hash, u64)>,
    /// The batch log's new anchor, if batches were stored since the last one.
    pub batch_log: Option<BatchAnchor>,
}

/// A started storage server.
#[derive(Debug)]
pub struct Server {
    storage: Arc<Storage>,
    local_addr: SocketAddr,
    stop_server: Option<oneshot::Sender<()>>,
    /// The task that escalates alerts not acknowledged in time.
    escalation: JoinHandle<()>,
    /// The subscription matcher and rest-hook worker.
    subscriptions: crate::subscriptions::Workers,
    server: Option<JoinHandle<()>>,
    stop_timer: Arc<Notify>,
    timer: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts storage on `config`, with `ledger` (the storage account's; it anchors) for
    /// the registry, the rules, consent and anchors.
    pub async fn start(config: &ServerConfig, ledger: Ledger<AnyBackend>) -> Result<Self, Error> {
        let tls = Arc::new(ServerTls::load(config.tls.clone())?);
        let store = Store::open(&config.database).await?;
        let chain = Chain::new(ledger).await?;
        let events = EventHub::new();
        let storage = Arc::new(Storage {
            store,
            chain,
            tls: Arc::clone(&tls),
            metrics: Arc::new(Metrics::new()),
            alerts: AlertHub::new(config.escalation, events.clone()),
            events,
            subscriptions: crate::subscriptions::Subscriptions::new(config.subscriptions),
        });
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Listen {
                address: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Listen {
            address: config.listen,
            source,
        })?;
        let subscriptions = crate::subscriptions::start(&storage);
        let (stop_server, stopped) = oneshot::channel::<()>();
        let served = Arc::clone(&storage);
        let options = ServeOptions {
            drain_timeout: config.drain_timeout,
            ..ServeOptions::default()
        };
        let server = tokio::spawn(serve(
            listener,
            tls,
            options,
            move |request, peer| {
                let storage = Arc::clone(&served);
                async move { storage.respond(request, peer).await }
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let stop_timer = Arc::new(Notify::new());
        let timer = config.anchor_interval.map(|every| {
            tokio::spawn(anchor_timer(
                Arc::clone(&storage),
                every,
                Arc::clone(&stop_timer),
            ))
        });
        let escalation = tokio::spawn(run_escalation(
            Arc::clone(&storage),
            config.escalation_check,
        ));
        Ok(Self {
            storage,
            local_addr,
            escalation,
            subscriptions,
            stop_server: Some(stop_server),
            server: Some(server),
            stop_timer,
            timer,
        })
    }

    /// Where the server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's state: its store, chain, TLS configuration and metrics.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Re-reads the certificate, key, CA bundle and CRLs (what SIGHUP does). On failure
    /// the previous configuration stays in force.
    pub fn reload(&self) -> Result<(), Error> {
        Ok(self.storage.tls.reload()?)
    }

    /// Anchors the access log and the batch log now, as the timer does.
    pub async fn anchor_now(&self) -> Result<AnchorRound, Error> {
        anchor_round(&self.storage).await
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout), stops
    /// the anchoring timer and closes the database.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// What [`Server::shutdown`] does, leaving the handle (stopped) in place: a test
    /// restarts storage on the same database and port by starting a new one.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take()
            && let Err(error) = server.await
        {
            tracing::error!(%error, "the storage server task failed");
        }
        self.stop_timer.notify_one();
        if let Some(timer) = self.timer.take() {
            let _ = timer.await;
        }
        self.escalation.abort();
        self.subscriptions.stop();
        self.storage.store.close().await;
    }
}

impl Drop for Server {
    /// A handle dropped without [`Server::shutdown`] still stops serving and anchoring.
    fn drop(&mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if let Some(timer) = &self.timer {
            timer.abort();
        }
        self.escalation.abort();
        self.subscriptions.stop();
    }
}

/// One anchoring round: the access log, then the batch log. Both are tried even when
/// the first fails; the first failure is returned.
async fn anchor_round(storage: &Storage) -> Result<AnchorRound, Error> {
    let access_log = crate::access::anchor(storage).await;
    let batch_log = crate::batch_log::anchor(storage).await;
    Ok(AnchorRound {
        access_log: access_log?,
        batch_log: batch_log?,
    })
}

async fn anchor_timer(storage: Arc<Storage>, every: Duration, stop: Arc<Notify>) {
    // `interval` panics on zero.
    let mut interval = tokio::time::interval(every.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            () = stop.notified() => return,
            _ = interval.tick() => {}
        }
        if let Err(error) = crate::access::anchor(&storage).await {
            tracing::warn!(%error, "anchoring the access log failed; retrying at the next tick");
        }
        if let Err(error) = crate::batch_log::anchor(&storage).await {
            tracing::warn!(%error, "anchoring the batch log failed; retrying at the next tick");
        }
    }
}
