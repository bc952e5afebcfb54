//! The alert side of the end-to-end tests and the alert benchmark: a heart-rate rule with
//! a critical alarm limit, and a staff member's live alert stream (server-sent events from
//! storage over mutual TLS) read event by event.

use std::time::Duration;

use http_body_util::BodyExt as _;
use wardseal_collector::client::Connection;
use wardseal_contracts::{AlarmLimit, AnyBackend, Ledger, Range, TypeRule, WideDecimal};
use wardseal_core::alert::AlertEvent;

use super::RULE;

/// Sets the ward's heart-rate rule: plausible 0–350 /min (outside: refused as false data),
/// at or below 40 a high-priority alarm (FHIR LL); no rate limit.
pub(crate) async fn set_alarm_rule(ledger: &Ledger<AnyBackend>) {
    let plausible = Range::new(
        WideDecimal::parse("0").unwrap(),
        WideDecimal::parse("350").unwrap(),
    )
    .unwrap();
    let rule = TypeRule::new(1, "/min", vec![plausible], 0)
        .unwrap()
        .with_alarms(vec![AlarmLimit::parse("0:<=40:high").unwrap()])
        .unwrap();
    ledger.set_type_rule(RULE, &rule).await.unwrap();
}

/// One client's server-sent event stream, read frame by frame.
pub(crate) struct EventStream {
    body: hyper::body::Incoming,
    buffer: String,
}

impl EventStream {
    /// Opens `GET /v1/alerts/stream` over `connection` (to storage).
    pub(crate) async fn open(connection: &Connection) -> Self {
        let response = connection.open_stream("/v1/alerts/stream").await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[hyper::header::CONTENT_TYPE],
            "text/event-stream"
        );
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event (comments and heartbeats skipped), or `None` if none came within
    /// `wait`. Panics when the server ends the stream.
    pub(crate) async fn next(&mut self, wait: Duration) -> Option<AlertEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|line| line.strip_prefix("data: ")) {
                    return Some(serde_json::from_str(data).unwrap());
                }
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return None,
                Ok(None) => panic!("the alert stream ended"),
                Ok(Some(frame)) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buffer.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
            }
        }
    }

    /// The next event matching `wanted`, skipping others, within `limit`.
    pub(crate) async fn until(
        &mut self,
        limit: Duration,
        wanted: impl Fn(&AlertEvent) -> bool,
    ) -> AlertEvent {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(event) = self.next(left).await else {
                panic!("the awaited alert event never came within {limit:?}");
            };
            if wanted(&event) {
                return event;
            }
        }
    }
}
