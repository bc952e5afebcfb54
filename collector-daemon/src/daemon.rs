//! The running collector: the HTTPS front door (on wardseal-net) and the background
//! tasks (rule and registry follower, CRL refresh, assignments, batcher, forwarder,
//! decision-log anchoring), started and stopped together.
//!
//! Routes: `POST /v1/readings` (devices), `GET /healthz`, `GET /metrics` (any verified
//! hospital certificate). Shutdown stops accepting, lets in-flight requests finish, then
//! stops the background tasks after a last batching and delivery round.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;
use wardseal_contracts::{AnyBackend, Ledger, Replica as ChainReplica};
use wardseal_core::exchange::WardAssignments;
use wardseal_core::identity::SubjectId;
use wardseal_net::crl::CrlFetcher;
use wardseal_net::peer::PeerIdentity;
use wardseal_net::serve::{ServeOptions, serve};
use wardseal_net::server::{ServerTls, ServerTlsSettings};
use wardseal_net::wire::{WireError, bytes_response, json_response, read_body};

use crate::alerts::{Activity, Alerts};
use crate::background;
use crate::batcher::{BatchLimits, Batcher, Card, CardSlots};
use crate::config::Config;
use crate::decision_log;
use crate::error::{ConfigError, Error};
use crate::forwarder::{self, StorageClient};
use crate::ingest::{Ingest, Replica, SkewWindow};
use crate::metrics::Metrics;
use crate::spool::{Spool, SpoolOptions};

/// A started collector.
#[derive(Debug)]
pub struct Daemon {
    local_addr: std::net::SocketAddr,
    tls: Arc<ServerTls>,
    spool: Spool,
    metrics: Arc<Metrics>,
    cards: Arc<CardSlots>,
    replica: Arc<Replica>,
    stop_server: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
    stop_tasks: Arc<Notify>,
    tasks: JoinSet<()>,
    alerts: Alerts,
}

struct Shared {
    ingest: Ingest,
    spool: Spool,
    metrics: Arc<Metrics>,
    max_body: usize,
}

/// The server TLS settings of a configuration (CRL files only: the URLs are fetched by
/// the CRL refresh task).
pub fn tls_settings(config: &Config) -> Result<ServerTlsSettings, Error> {
    let mut settings = ServerTlsSettings::new(
        &config.tls.certificate,
        &config.tls.key,
        &config.tls.ca_bundle,
    );
    settings.crls = config.crl_sources()?.files;
    settings.expired_crl = config.tls.expired_crl.into();
    Ok(settings)
}

/// Fetches the CRLs of the configured URLs into `tls` once; fails unless every URL gave
/// a CRL that verified (a collector never starts without the revocations it was told
/// to follow).
pub async fn first_crl_fetch(config: &Config, tls: &ServerTls) -> Result<CrlFetcher, Error> {
    let mut fetcher = CrlFetcher::new(
        config.crl_sources()?.urls,
        Duration::from_secs(config.tls.crl_fetch_timeout_secs.max(1)),
    );
    if !fetcher.urls().is_empty() {
        let failures = fetcher.refresh(tls).await;
        if !fetcher.complete() {
            return Err(ConfigError::Invalid {
                key: "tls.crls",
                reason: failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }
            .into());
        }
    }
    Ok(fetcher)
}

/// The client TLS configuration the collector uses towards storage.
pub fn storage_client(config: &Config) -> Result<StorageClient, Error> {
    Ok(StorageClient::new(
        config.storage_endpoint()?,
        storage_tls(config)?,
    ))
}

/// The TLS client configuration towards storage (the collector's certificate).
fn storage_tls(config: &Config) -> Result<Arc<rustls::ClientConfig>, Error> {
    let settings = wardseal_net::client::ClientTlsSettings::new(
        &config.tls.ca_bundle,
        &config.tls.certificate,
        &config.tls.key,
    );
    Ok(settings.client_config(&[b"h2", b"http/1.1"])?)
}

/// How long one alert delivery may take before it is retried.
const ALERT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The pooled mutual-TLS client the alert sender pushes alerts to storage with.
pub fn alert_client(config: &Config) -> Result<crate::client::Connection, Error> {
    let options = crate::client::ClientOptions {
        request_timeout: Some(ALERT_REQUEST_TIMEOUT),
        ..crate::client::ClientOptions::default()
    };
    Ok(crate::client::Connection::new(
        &config.storage_endpoint()?,
        storage_tls(config)?,
        options,
    ))
}

/// Opens the ledger the configuration names: the embedded chain as `ledger.account`, or
/// a node as the key in `ledger.account_key_file` (0600).
pub fn open_ledger(config: &Config) -> Result<Ledger<AnyBackend>, Error> {
    use wardseal_contracts::{AccountKey, LedgerAccount, LedgerLocation};
    let ledger = &config.ledger;
    let location =
        LedgerLocation::from_choice(ledger.embedded_dir.clone(), ledger.rpc_url.as_deref())?;
    let account = match (&location, &ledger.account_key_file) {
        (LedgerLocation::Rpc(_), Some(path)) => LedgerAccount::Key(AccountKey::read(path)?),
        _ => LedgerAccount::Address(
            ledger
                .account
                .as_deref()
                .unwrap_or_default()
                .parse()
                .map_err(|e| ConfigError::Invalid {
                    key: "ledger.account",
                    reason: format!("not an Ethereum address: {e}"),
                })?,
        ),
    };
    Ok(location.open(account, &ledger.suite)?)
}

/// Opens the patient cards the configuration holds (PKCS#11 tokens).
pub fn open_cards(config: &Config) -> Result<Vec<(SubjectId, Card)>, Error> {
    let mut cards = Vec::new();
    for section in &config.cards {
        let pkcs11 = wardseal_card::Pkcs11Config::from_uri(&section.pkcs11_uri)?;
        let signer = wardseal_card::Pkcs11Signer::open(&pkcs11)?;
        let certificate = match &section.certificate {
            Some(path) => wardseal_net::files::certificates("patient certificate", path)?
                .into_iter()
                .next()
                .map(|c| c.as_ref().to_vec()),
            None => wardseal_card::Signer::certificate_der(&signer).map(<[u8]>::to_vec),
        }
        .ok_or_else(|| ConfigError::Invalid {
            key: "cards.certificate",
            reason: format!(
                "no certificate for patient {}: name a file or store it on the token",
                section.patient
            ),
        })?;
        cards.push((
            section.patient.clone(),
            Card {
                signer: Arc::new(signer),
                certificate,
            },
        ));
    }
    Ok(cards)
}

/// Reads a `WardAssignments` JSON file.
pub fn read_assignments(path: &std::path::Path) -> Result<WardAssignments, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ConfigError::Invalid {
        key: "storage.assignments_file",
        reason: e.to_string(),
    })
}

impl Daemon {
    /// Starts the collector on `config`, with `ledger` for rules, registry and anchors
    /// and `cards` present from the start.
    pub async fn start(
        config: &Config,
        ledger: Ledger<AnyBackend>,
        cards: Vec<(SubjectId, Card)>,
    ) -> Result<Self, Error> {
        let tls = Arc::new(ServerTls::load(tls_settings(config)?)?);
        let crl_fetcher = first_crl_fetch(config, &tls).await?;
        let storage = Arc::new(storage_client(config)?);
        let spool = Spool::open(SpoolOptions {
            path: config.spool.path.clone(),
            max_bytes: (config.spool.max_bytes > 0).then_some(config.spool.max_bytes),
            max_group: config.spool.max_group,
        })?;
        let metrics = Arc::new(Metrics::default());
        let (chain, follower) = ChainReplica::bootstrap(&ledger).await?;
        let replica = Arc::new(Replica::from_chain(chain));
        let (slots, bedside) = place_cards(config, cards);
        metrics
            .cards_present
            .set(i64::try_from(slots.len()).unwrap_or(i64::MAX));
        let stop_tasks = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        if !bedside.is_empty() {
            let watcher = wardseal_card::watcher::CardWatcher::start()?;
            tasks.spawn(background::watch_readers(
                watcher,
                bedside,
                Arc::clone(&slots),
                Arc::clone(&metrics),
                Arc::clone(&stop_tasks),
            ));
        }

        // Alerts: raised from here on (the outbox sender and the technical conditions
        // start below).
        let (alerts, raised) = Alerts::new(spool.clone(), config.ward().clone());
        // Assignments: a file, or storage's API.
        if let Some(path) = &config.storage.assignments_file {
            let assignments = read_assignments(path)?;
            forwarder::apply_assignments(&spool, &replica, &assignments).await?;
        }
        tasks.spawn(background::refresh_assignments(
            spool.clone(),
            Arc::clone(&replica),
            Arc::clone(&storage),
            config.storage.assignments_file.clone(),
            config.ward().clone(),
            Duration::from_secs(config.storage.assignments_refresh_secs.max(1)),
            Arc::clone(&metrics),
            Duration::from_secs(config.storage.unassigned_alert_secs),
            alerts.clone(),
            Arc::clone(&stop_tasks),
        ));
        tasks.spawn(background::follow_ledger(
            Arc::clone(&replica),
            follower,
            Duration::from_millis(config.ledger.follow_interval_ms.max(10)),
            Arc::clone(&stop_tasks),
        ));
        tasks.spawn(background::anchor_decisions(
            spool.clone(),
            Arc::clone(&metrics),
            ledger.clone(),
            decision_log::log_id(config.ward().as_str()),
            Duration::from_secs(config.ledger.anchor_interval_secs.max(1)),
            Arc::clone(&stop_tasks),
        ));
        tasks.spawn(background::refresh_crls(
            Arc::clone(&tls),
            crl_fetcher,
            Arc::clone(&metrics),
            Duration::from_secs(config.tls.crl_refresh_secs.max(1)),
            Arc::clone(&stop_tasks),
        ));
        // Batcher and forwarder.
        let sealed = Arc::new(Notify::new());
        let batcher = Batcher::new(
            spool.clone(),
            Arc::clone(&slots),
            config.ward().clone(),
            BatchLimits {
                max_readings: config.batch.max_readings,
                linger: config.linger(),
            },
            Arc::clone(&metrics),
            Arc::clone(&sealed),
        );
        let tick = config
            .linger()
            .clamp(Duration::from_millis(5), Duration::from_millis(50));
        tasks.spawn(Arc::clone(&batcher).run(tick, Arc::clone(&stop_tasks)));
        // Alerts: the outbox sender and the technical conditions.
        tasks.spawn(forwarder::run(
            forwarder::Delivery {
                spool: spool.clone(),
                storage,
                metrics: Arc::clone(&metrics),
                cards: Arc::clone(&slots),
                collector: config.ward().clone(),
                alerts: alerts.clone(),
            },
            sealed,
            Arc::clone(&stop_tasks),
        ));
        let activity = Arc::new(Activity::default());
        tasks.spawn(crate::alerts::send(
            alerts.clone(),
            alert_client(config)?,
            raised,
            Arc::clone(&stop_tasks),
        ));
        tasks.spawn(crate::alerts::watch(
            alerts.clone(),
            Arc::clone(&activity),
            Arc::clone(&slots),
            (config.spool.max_bytes > 0).then_some(config.spool.max_bytes),
            config.alerts.clone(),
            Arc::clone(&stop_tasks),
        ));

        // The front door.
        let shared = Arc::new(Shared {
            ingest: Ingest::new(
                Arc::clone(&replica),
                spool.clone(),
                Arc::clone(&metrics),
                SkewWindow {
                    past_secs: config.ingest.skew_past_secs,
                    future_secs: config.ingest.skew_future_secs,
                },
            )
            .with_alerts(alerts.clone(), activity),
            spool: spool.clone(),
            metrics: Arc::clone(&metrics),
            max_body: config.ingest.max_body_bytes,
        });
        let (local_addr, stop_server, server) = open_front_door(config, &tls, shared)?;
        Ok(Self {
            local_addr,
            tls,
            spool,
            metrics,
            cards: slots,
            replica,
            stop_server: Some(stop_server),
            server,
            stop_tasks,
            tasks,
            alerts,
        })
    }

    /// Where the collector listens.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// Re-reads the certificate, key, CA bundle and CRLs (SIGHUP).
    pub fn reload(&self) -> Result<(), Error> {
        Ok(self.tls.reload()?)
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The cards present (insert and remove them as the card watcher reports).
    pub fn cards(&self) -> &Arc<CardSlots> {
        &self.cards
    }

    /// The alert handle: raise technical alerts from anywhere in the collector.
    pub fn alerts(&self) -> &Alerts {
        &self.alerts
    }

    /// The registry, rules and assignments replica.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// Stops accepting, drains in-flight requests, then stops the background tasks.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        self.stop_tasks.notify_waiters();
        // Tasks between two waits see the next notification: repeat until all ended.
        while !self.tasks.is_empty() {
            self.stop_tasks.notify_waiters();
            tokio::select! {
                _ = self.tasks.join_next() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

/// Splits the configured cards: those without a bedside reader are present from the
/// start (in the returned slots); those bound to a reader (returned with it) are present
/// only while the reader holds a card.
fn place_cards(
    config: &Config,
    cards: Vec<(SubjectId, Card)>,
) -> (Arc<CardSlots>, Vec<(String, SubjectId, Card)>) {
    let slots = Arc::new(CardSlots::default());
    let mut bedside = Vec::new();
    for (patient, card) in cards {
        let reader = config
            .cards
            .iter()
            .find(|section| section.patient == patient)
            .and_then(|section| section.reader.clone());
        match reader {
            Some(reader) => bedside.push((reader, patient, card)),
            None => slots.insert(patient, card),
        }
    }
    (slots, bedside)
}

/// Binds the listener and starts serving `shared`'s routes over `tls`; returns the
/// bound address, the sender that stops accepting, and the serving task.
fn open_front_door(
    config: &Config,
    tls: &Arc<ServerTls>,
    shared: Arc<Shared>,
) -> Result<
    (
        std::net::SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
    Error,
> {
    let listener =
        listen(config.collector.listen, config.collector.listen_backlog).map_err(|source| {
            ConfigError::Read {
                path: config.collector.listen.to_string().into(),
                source,
            }
        })?;
    let local_addr = listener.local_addr().map_err(|source| ConfigError::Read {
        path: config.collector.listen.to_string().into(),
        source,
    })?;
    let options = ServeOptions {
        max_connections: config.collector.max_connections,
        drain_timeout: Duration::from_secs(config.collector.drain_secs),
        ..ServeOptions::default()
    };
    let (stop_server, stopped) = oneshot::channel::<()>();
    let handler = move |request: Request<Incoming>, peer: Arc<PeerIdentity>| {
        let shared = Arc::clone(&shared);
        async move { handle(&shared, request, &peer).await }
    };
    let server = tokio::spawn(serve(listener, Arc::clone(tls), options, handler, async {
        let _ = stopped.await;
    }));
    Ok((local_addr, stop_server, server))
}

/// Binds the front door with a listen backlog of `backlog` (the kernel caps it at
/// `net.core.somaxconn`). tokio's `TcpListener::bind` asks for 1024: when a ward's devices
/// all reconnect at once (after a collector restart or a network blip) more SYNs arrive
/// than the accept loop takes in the time the handshakes keep the CPU busy, and each one
/// dropped by a full queue costs its device a 1 s SYN retransmission.
fn listen(address: std::net::SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog.max(1))
}

async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
    peer: &PeerIdentity,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::POST, "/v1/readings") => {
            let body = match read_body(request.into_body(), shared.max_body).await {
                Ok(body) => body,
                Err(error) => return error.to_wire().into_response(),
            };
            let response = shared
                .ingest
                .submit(&peer.identity, peer.certificate_der.as_ref(), &body)
                .await;
            let status =
                StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_response(status, &response.body)
        }
        (&Method::GET, "/healthz") => json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ok", "spool_depth": shared.spool.depth()}),
        ),
        (&Method::GET, "/metrics") => bytes_response(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            shared.metrics.render(shared.spool.depth()),
        ),
        (_, "/v1/readings" | "/healthz" | "/metrics") => WireError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed on {path}", request.method()),
        )
        .into_response(),
        _ => WireError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route {path}; devices POST to /v1/readings"),
        )
        .into_response(),
    }
}
