//! What an attack must meet ([`Expected`]), what it met ([`Observed`]), what it sent
//! ([`Evidence`]) and its result ([`Outcome`]).

use std::fmt;

use wardseal_core::hash::Hash;

use super::Scenario;

/// Which server refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Server {
    /// The ward's collector (`POST /v1/readings`).
    Collector,
    /// Storage (`POST /v1/batches`, the FHIR routes).
    Storage,
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Server::Collector => "collector",
            Server::Storage => "storage",
        })
    }
}

/// How an attack must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expected {
    /// An HTTP answer with this status and machine code.
    Refusal {
        /// The refusing server.
        server: Server,
        /// The HTTP status.
        status: u16,
        /// The machine code in the JSON error body.
        code: &'static str,
    },
    /// The TLS handshake ends with this alert from the server (rustls'
    /// `AlertDescription` name: `UnknownCA`, `CertificateRevoked`, `HandshakeFailure`).
    TlsAlert {
        /// The alert's name.
        alert: &'static str,
    },
    /// No HTTP answer at all (the bytes never reach HTTP).
    NoHttpAnswer,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Refusal {
                server,
                status,
                code,
            } => write!(f, "{server} {status} {code}"),
            Expected::TlsAlert { alert } => write!(f, "TLS alert {alert}"),
            Expected::NoHttpAnswer => f.write_str("no HTTP answer"),
        }
    }
}

/// What the attack met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// An HTTP answer.
    Answer {
        /// The answering server.
        server: Server,
        /// The HTTP status.
        status: u16,
        /// The machine code of the JSON error body, if it has one.
        code: Option<String>,
    },
    /// The server ended the TLS handshake with an alert.
    TlsAlert {
        /// The alert's name (rustls' `AlertDescription`, or mapped from OpenSSL's reason).
        alert: String,
    },
    /// The connection failed otherwise (no alert seen).
    ConnectionFailed {
        /// What the client saw.
        reason: String,
    },
    /// The connection ended without an HTTP answer.
    NoHttpAnswer {
        /// What came back instead.
        detail: String,
    },
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Answer {
                server,
                status,
                code,
            } => write!(
                f,
                "{server} {status} {}",
                code.as_deref().unwrap_or("(no code)")
            ),
            Observed::TlsAlert { alert } => write!(f, "TLS alert {alert}"),
            Observed::ConnectionFailed { reason } => write!(f, "connection failed: {reason}"),
            Observed::NoHttpAnswer { detail } => write!(f, "no HTTP answer ({detail})"),
        }
    }
}

impl Observed {
    /// Whether this is the refusal `expected` describes.
    pub fn matches(&self, expected: &Expected) -> bool {
        match (expected, self) {
            (
                Expected::Refusal {
                    server,
                    status,
                    code,
                },
                Observed::Answer {
                    server: answered,
                    status: got,
                    code: Some(got_code),
                },
            ) => server == answered && status == got && code == got_code,
            (Expected::TlsAlert { alert }, Observed::TlsAlert { alert: got }) => alert == got,
            (Expected::NoHttpAnswer, Observed::NoHttpAnswer { .. }) => true,
            _ => false,
        }
    }
}

/// What an attack sent that storage must never hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Leaf hashes of the forged or refused readings.
    pub leaves: Vec<Hash>,
    /// Header hashes of the forged or refused batches.
    pub headers: Vec<Hash>,
}

/// One attack's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The attack.
    pub scenario: Scenario,
    /// The refusal the design promises.
    pub expected: Expected,
    /// What the attack met.
    pub observed: Observed,
    /// Whether the observed refusal is the expected one and every other check of the
    /// scenario held (see [`Outcome::problems`]).
    pub refused_as_expected: bool,
    /// What the attack sent that must not be stored.
    pub evidence: Evidence,
    /// Facts the scenario established on the way (what was accepted legitimately, what
    /// was acknowledged).
    pub notes: Vec<String>,
    /// Checks of the scenario besides the refusal that failed (empty when all held).
    pub problems: Vec<String>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.refused_as_expected {
            "refused"
        } else {
            "NOT AS EXPECTED"
        };
        write!(
            f,
            "{:<28} {mark:<15} expected {}; observed {}",
            self.scenario.name(),
            self.expected,
            self.observed
        )?;
        for problem in &self.problems {
            write!(f, "; problem: {problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_match_only_their_expectation() {
        let expected = Scenario::ReplayedSequence.expected();
        let right = Observed::Answer {
            server: Server::Collector,
            status: 409,
            code: Some("replay".into()),
        };
        assert!(right.matches(&expected));
        let wrong_code = Observed::Answer {
            server: Server::Collector,
            status: 409,
            code: Some("chain_gap".into()),
        };
        assert!(!wrong_code.matches(&expected));
        let accepted = Observed::Answer {
            server: Server::Collector,
            status: 202,
            code: None,
        };
        assert!(!accepted.matches(&expected));
        assert!(
            Observed::TlsAlert {
                alert: "HandshakeFailure".into()
            }
            .matches(&Scenario::Tls10.expected())
        );
        assert!(
            !Observed::ConnectionFailed {
                reason: "reset".into()
            }
            .matches(&Scenario::Tls10.expected())
        );
    }
}
