//! The websocket channel: `$get-ws-binding-token` hands the subscription's owner a
//! short-lived, single-use token; the owner opens a websocket at `/fhir/websocket` on the
//! same mutual-TLS door (an HTTP/1.1 upgrade) and sends `bind-with-token <token>`.
//! Storage answers with a `handshake` notification, then sends every event not yet
//! delivered, in order, as text frames holding notification Bundles, and a `heartbeat`
//! when idle. The token binds only for the identity it was issued to: a socket opened
//! with another certificate cannot use it.
//!
//! Events are marked delivered once written to the socket; a socket that drops loses
//! nothing recorded (`$events` and the next binding pick up from the mark).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role as SocketRole;
use wardseal_net::peer::PeerIdentity;

use super::records::{self, Subscription};
use super::resource::{self, ChannelKind, NotificationType};
use super::{fhir_response, lock};
use crate::api::Storage;
use crate::error::{AccessRefusal, Error};
use crate::store::now_micros;

/// How long a new socket has to send its `bind-with-token`.
const BIND_TIMEOUT: Duration = Duration::from_secs(30);

/// A binding token not used yet.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    subscription: String,
    owner: String,
    role: String,
    expires: Instant,
}

/// `$get-ws-binding-token` for `subscription` (its owner asked).
pub(crate) fn binding_token(
    storage: &Storage,
    request: &Request<Incoming>,
    subscription: &Subscription,
) -> Result<Response<Full<Bytes>>, Error> {
    if subscription.channel.kind != ChannelKind::Websocket {
        return Err(Error::BadRequest(format!(
            "Subscription/{} has a {} channel; binding tokens are for websocket channels",
            subscription.id,
            subscription.channel.kind.code()
        )));
    }
    let lifetime = storage.subscriptions.options.token_lifetime;
    let token = super::random_id() + &super::random_id();
    {
        let mut tokens = lock(&storage.subscriptions.tokens);
        tokens.retain(|_, binding| binding.expires > Instant::now());
        tokens.insert(
            token.clone(),
            Binding {
                subscription: subscription.id.clone(),
                owner: subscription.owner.clone(),
                role: subscription.owner_role.clone(),
                expires: Instant::now() + lifetime,
            },
        );
    }
    let expiration = now_micros() + i64::try_from(lifetime.as_micros()).unwrap_or(0);
    let socket_url = super::base_url(request)
        .replacen("https://", "wss://", 1)
        .replace("/fhir", "/fhir/websocket");
    Ok(fhir_response(
        StatusCode::OK,
        &json!({
            "resourceType": "Parameters",
            "parameter": [
                {"name": "token", "valueString": token},
                {"name": "expiration", "valueDateTime": resource::instant(expiration)},
                {"name": "subscription", "valueString": subscription.id},
                {"name": "websocket-url", "valueUrl": socket_url}
            ]
        }),
    ))
}

fn header_has(request: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Accepts a websocket upgrade at `/fhir/websocket` from `peer`.
pub(crate) fn upgrade(
    storage: &Storage,
    request: Request<Incoming>,
    peer: &PeerIdentity,
) -> Result<Response<Full<Bytes>>, Error> {
    let owner = super::owner(peer)?;
    if request.method() != hyper::Method::GET
        || !header_has(&request, header::CONNECTION, "upgrade")
        || !header_has(&request, header::UPGRADE, "websocket")
    {
        return Err(Error::BadRequest(
            "/fhir/websocket is a websocket: send GET with Connection: Upgrade and Upgrade: websocket"
                .into(),
        ));
    }
    if !header_has(&request, header::SEC_WEBSOCKET_VERSION, "13") {
        return Err(Error::BadRequest(
            "only websocket version 13 (RFC 6455) is served".into(),
        ));
    }
    let accept = request
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|key| derive_accept_key(key.as_bytes()))
        .ok_or_else(|| Error::BadRequest("the upgrade has no Sec-WebSocket-Key".into()))?;
    let server = storage
        .subscriptions
        .storage()
        .ok_or_else(|| Error::NotFound("the websocket channel (not started)".into()))?;
    let role = peer.role().name().to_owned();
    tokio::spawn(async move {
        match hyper::upgrade::on(request).await {
            Ok(upgraded) => {
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    SocketRole::Server,
                    None,
                )
                .await;
                serve(server, owner, role, socket).await;
            }
            Err(error) => tracing::debug!(%error, "a websocket upgrade did not complete"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    headers.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    if let Ok(accept) = header::HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    Ok(response)
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn send_error(socket: &mut Socket, error: &Error) {
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "security", "details": {"text": error.to_string()}}]
    });
    let _ = socket.send(Message::text(body.to_string())).await;
    let _ = socket.close(None).await;
}

/// Waits for the binding, then streams the subscription's events.
async fn serve(storage: Arc<Storage>, owner: String, role: String, mut socket: Socket) {
    let binding = tokio::time::timeout(BIND_TIMEOUT, async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message {
                return Some(text.as_str().trim().to_owned());
            }
        }
        None
    })
    .await;
    let Ok(Some(text)) = binding else {
        return;
    };
    let Some(token) = text.strip_prefix("bind-with-token ") else {
        let error = Error::BadRequest("the first message must be `bind-with-token <token>`".into());
        send_error(&mut socket, &error).await;
        return;
    };
    let binding = lock(&storage.subscriptions.tokens).remove(token.trim());
    let Some(binding) = binding.filter(|binding| binding.expires > Instant::now()) else {
        let error = Error::BadRequest("the binding token is unknown, used or expired".into());
        send_error(&mut socket, &error).await;
        return;
    };
    if binding.owner != owner || binding.role != role {
        let error = Error::Access(AccessRefusal::NotResponsible {
            staff: owner,
            patient: format!("Subscription/{}", binding.subscription),
        });
        send_error(&mut socket, &error).await;
        return;
    }
    if let Err(error) = stream(&storage, &binding.subscription, &mut socket).await {
        tracing::debug!(%error, id = binding.subscription, "a subscription websocket ended");
    }
    let _ = socket.close(None).await;
}

#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("the subscription was deleted")]
    Deleted,
    #[error("the socket failed: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the client closed the socket")]
    Closed,
    #[error(transparent)]
    Storage(#[from] Error),
}

async fn stream(storage: &Storage, id: &str, socket: &mut Socket) -> Result<(), Ended> {
    let mut recorded = storage.subscriptions.watch();
    let mut subscription = records::load(&storage.store, id)
        .await?
        .ok_or(Ended::Deleted)?;
    let heartbeat = subscription
        .channel
        .heartbeat_secs
        .map(|secs| Duration::from_secs(u64::from(secs)))
        .unwrap_or(storage.subscriptions.options.websocket_heartbeat);
    let content = subscription.channel.content;
    let handshake = resource::notification(
        &subscription,
        NotificationType::Handshake,
        &[],
        content,
        now_micros(),
    );
    socket.send(Message::text(handshake.to_string())).await?;
    let mut last_sent = Instant::now();
    loop {
        subscription = records::load(&storage.store, id)
            .await?
            .ok_or(Ended::Deleted)?;
        let pending = records::events(
            &storage.store,
            id,
            subscription.delivered + 1,
            i64::MAX,
            i64::from(subscription.channel.max_count),
        )
        .await?;
        if let Some(last) = pending.last().map(|event| event.number) {
            let visible =
                super::delivery::readable(storage, &subscription, pending, "notify").await?;
            if !visible.is_empty() {
                let bundle = resource::notification(
                    &subscription,
                    NotificationType::EventNotification,
                    &visible,
                    content,
                    now_micros(),
                );
                socket.send(Message::text(bundle.to_string())).await?;
                last_sent = Instant::now();
            }
            records::delivered(&storage.store, id, last).await?;
            continue;
        }
        let idle = heartbeat.saturating_sub(last_sent.elapsed());
        tokio::select! {
            _ = recorded.changed() => {}
            () = tokio::time::sleep(idle) => {
                let bundle = resource::notification(
                    &subscription,
                    NotificationType::Heartbeat,
                    &[],
                    content,
                    now_micros(),
                );
                socket.send(Message::text(bundle.to_string())).await?;
                last_sent = Instant::now();
            }
            message = socket.next() => match message {
                None | Some(Ok(Message::Close(_))) => return Err(Ended::Closed),
                Some(Err(error)) => return Err(error.into()),
                Some(Ok(_)) => {}
            },
        }
    }
}
