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
use wardseal_contracts::{AnyBackend, Cursor, EventFollower, Ledger, RuleBook};
use wardseal_core::exchange::WardAssignments;
use wardseal_core::identity::SubjectId;
use wardseal_net::crl::CrlFetcher;
use wardseal_net::peer::PeerIdentity;
use wardseal_net::serve::{ServeOptions, serve};
use wardseal_net::server::{ServerTls, ServerTlsSettings};
use wardseal_net::wire::{WireError, bytes_response, json_response, read_body};

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
    let settings = wardseal_net::client::ClientTlsSettings::new(
        &config.tls.ca_bundle,
        &config.tls.certificate,
        &config.tls.key,
    );
    let client_config = settings.client_config(&[b"h2", b"http/1.1"])?;
    Ok(StorageClient::new(
        config.storage_endpoint()?,
        client_config,
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
        let mut crl_fetcher = first_crl_fetch(config, &tls).await?;
        let storage = Arc::new(storage_client(config)?);
        let spool = Spool::open(SpoolOptions {
            path: config.spool.path.clone(),
            max_bytes: (config.spool.max_bytes > 0).then_some(config.spool.max_bytes),
            max_group: config.spool.max_group,
        })?;
        let metrics = Arc::new(Metrics::default());
        let head = ledger.head().await?;
        let rules = RuleBook::from_parts(&ledger.rules().await?, &ledger.group_rules().await?);
        let replica = Arc::new(Replica::new(ledger.devices().await?, rules));
        let slots = Arc::new(CardSlots::default());
        // Cards bound to a bedside reader are present only while the reader holds a card.
        let mut bedside: Vec<(String, SubjectId, Card)> = Vec::new();
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
        metrics.cards_present.store(
            i64::try_from(slots.len()).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        let stop_tasks = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        if !bedside.is_empty() {
            let watcher = wardseal_card::watcher::CardWatcher::start()?;
            tasks.spawn(watch_readers(
                watcher,
                bedside,
                Arc::clone(&slots),
                Arc::clone(&metrics),
                Arc::clone(&stop_tasks),
            ));
        }

        // Assignments: a file, or storage's API.
        if let Some(path) = &config.storage.assignments_file {
            let assignments = read_assignments(path)?;
            forwarder::apply_assignments(&spool, &replica, &assignments).await?;
        }
        {
            let (spool, replica, storage) =
                (spool.clone(), Arc::clone(&replica), Arc::clone(&storage));
            let file = config.storage.assignments_file.clone();
            let ward = config.ward().clone();
            let every = Duration::from_secs(config.storage.assignments_refresh_secs.max(1));
            let stop = Arc::clone(&stop_tasks);
            tasks.spawn(async move {
                // Warn when fetching starts failing and when it works again, not per try.
                let mut failing = false;
                loop {
                    let fetched = match &file {
                        Some(path) => read_assignments(path).map_err(Error::from),
                        None => storage.assignments(&ward).await.map_err(Error::from),
                    };
                    if fetched.is_ok() && failing {
                        eprintln!("wardseal-collector: assignments can be fetched again");
                    }
                    match fetched {
                        Ok(assignments) => {
                            failing = false;
                            if let Err(error) =
                                forwarder::apply_assignments(&spool, &replica, &assignments).await
                            {
                                eprintln!("wardseal-collector: binding assignments: {error}");
                            }
                        }
                        Err(error) => {
                            if !failing {
                                eprintln!(
                                    "wardseal-collector: warning: assignments: {error}; keeping the last ones, retrying every {every:?}"
                                );
                            }
                            failing = true;
                        }
                    }
                    tokio::select! {
                        () = stop.notified() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                }
            });
        }
        // Rules and registry follower.
        {
            let replica = Arc::clone(&replica);
            let mut follower = EventFollower::new(
                ledger.clone(),
                Cursor {
                    next_block: head.saturating_add(1),
                },
            );
            let every = Duration::from_millis(config.ledger.follow_interval_ms.max(10));
            let stop = Arc::clone(&stop_tasks);
            tasks.spawn(async move {
                loop {
                    match follower.poll().await {
                        Ok(events) => {
                            for event in events {
                                replica.apply(&event.event);
                            }
                        }
                        Err(error) => {
                            eprintln!("wardseal-collector: following the ledger: {error}")
                        }
                    }
                    tokio::select! {
                        () = stop.notified() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                }
            });
        }
        // Decision-log anchoring.
        {
            let (spool, metrics, ledger) = (spool.clone(), Arc::clone(&metrics), ledger.clone());
            let log = decision_log::log_id(config.ward().as_str());
            let every = Duration::from_secs(config.ledger.anchor_interval_secs.max(1));
            let stop = Arc::clone(&stop_tasks);
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.notified() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    if let Err(error) =
                        decision_log::anchor_once(&spool, &ledger, log, 1_000_000).await
                    {
                        eprintln!("wardseal-collector: anchoring the decision log: {error}");
                    }
                    if let Ok(lag) = decision_log::anchor_lag_micros(&spool).await {
                        metrics
                            .anchor_lag_micros
                            .store(lag, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        // CRL refresh: files re-read, URLs fetched; the last good CRL of each source stays
        // in force. One warning when a failure starts and one when it ends, not one per
        // attempt.
        {
            let tls = Arc::clone(&tls);
            let metrics = Arc::clone(&metrics);
            let every = Duration::from_secs(config.tls.crl_refresh_secs.max(1));
            let stop = Arc::clone(&stop_tasks);
            tasks.spawn(async move {
                let mut failing = false;
                let mut expired = false;
                loop {
                    tokio::select! {
                        () = stop.notified() => return,
                        () = tokio::time::sleep(every) => {}
                    }
                    let failures = if crl_fetcher.urls().is_empty() {
                        tls.reload().err().map(|error| error.to_string()).into_iter().collect()
                    } else {
                        crl_fetcher
                            .refresh(&tls)
                            .await
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                    };
                    metrics
                        .crl_fetch_failures
                        .fetch_add(failures.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    match (failing, failures.is_empty()) {
                        (false, false) => eprintln!(
                            "wardseal-collector: warning: CRL refresh failed, keeping the last good CRLs (retrying every {every:?}): {}",
                            failures.join("; ")
                        ),
                        (true, true) => eprintln!("wardseal-collector: CRL refresh works again"),
                        _ => {}
                    }
                    failing = !failures.is_empty();
                    let now_expired = tls.expired_crl(std::time::SystemTime::now());
                    metrics.crl_expired.store(
                        u64::from(now_expired.is_some()),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    match (&now_expired, expired) {
                        (Some(error), false) => eprintln!(
                            "wardseal-collector: warning: {error} ({})",
                            match tls.settings().expired_crl {
                                wardseal_net::server::ExpiredCrl::Refuse => "expired_crl = \"refuse\": every device is refused",
                                wardseal_net::server::ExpiredCrl::Warn => "expired_crl = \"warn\": its revocations stay in force",
                            }
                        ),
                        (None, true) => eprintln!("wardseal-collector: the CRLs are current again"),
                        _ => {}
                    }
                    expired = now_expired.is_some();
                }
            });
        }
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
        tasks.spawn(forwarder::run(
            spool.clone(),
            storage,
            Arc::clone(&metrics),
            sealed,
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
            ),
            spool: spool.clone(),
            metrics: Arc::clone(&metrics),
            max_body: config.ingest.max_body_bytes,
        });
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
        let server = tokio::spawn(serve(listener, Arc::clone(&tls), options, handler, async {
            let _ = stopped.await;
        }));
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

/// Follows the bedside readers: a card inserted in a patient's reader makes their token
/// present (pending readings get signed), a card removed makes it absent (readings wait
/// in the spool). One warning, not a loop of them, if pcscd goes away.
async fn watch_readers(
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
                eprintln!(
                    "wardseal-collector: warning: watching the bedside readers failed ({error}); cards keep their last state"
                );
                stop.notified().await;
                return;
            }
            None => return,
        };
        for (_, patient, card) in bedside.iter().filter(|(r, _, _)| *r == reader) {
            if present {
                slots.insert(patient.clone(), card.clone());
            } else {
                slots.remove(patient);
            }
            eprintln!(
                "wardseal-collector: card of {patient} {} reader {reader:?}",
                if present {
                    "inserted in"
                } else {
                    "removed from"
                }
            );
        }
        metrics.cards_present.store(
            i64::try_from(slots.len()).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
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
            "text/plain; version=0.0.4",
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
