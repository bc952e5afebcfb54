//! `GET /v1/readings/{leaf}/verify`: a reading's proof, checked by the server step by
//! step for the ward screen's proof badge.
//!
//! The document is the one `GET /v1/readings/{leaf}/proof` gives the same caller
//! ([`proof::for_peer`]: the patient, or staff allowed to read the patient's data, logged
//! in the access log), and the checks are [`proof::verify_each`]'s, the same code as the
//! offline `wardseal-storage verify-proof`: the patient certificate against the hospital's
//! root (a self-signed certificate of storage's CA bundle), the card's signature over the
//! batch header, the reading's inclusion, the batch's inclusion under the anchored root,
//! and the anchor on the chain storage uses.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use wardseal_net::peer::PeerIdentity;
use wardseal_net::wire::json_response;

use crate::api::Storage;
use crate::error::Error;
use crate::proof::{self, Check, CheckOutcome, Verification};

/// Answers `GET /v1/readings/{leaf}/verify` for `peer`.
pub async fn respond(
    storage: &Storage,
    peer: &PeerIdentity,
    leaf: &str,
) -> Result<Response<Full<Bytes>>, Error> {
    let document = proof::for_peer(storage, peer, leaf, "verify proof").await?;
    let roots = roots(storage)?;
    let mut verification = None;
    // A bundle may hold more than one root (during a root rollover): the patient
    // certificate needs to chain to one of them.
    for root in &roots {
        let attempt = proof::verify_each(&document, root, storage.chain.ledger()).await;
        let chained = attempt
            .checks
            .iter()
            .any(|step| step.check == Check::Certificate && step.outcome == CheckOutcome::Passed);
        verification = Some(attempt);
        if chained {
            break;
        }
    }
    let verification: Verification = verification.ok_or_else(|| {
        Error::NotFound("a root certificate (self-signed) in storage's CA bundle".into())
    })?;
    Ok(json_response(StatusCode::OK, &verification))
}

/// The self-signed certificates of storage's CA bundle (DER).
fn roots(storage: &Storage) -> Result<Vec<Vec<u8>>, Error> {
    Ok(
        wardseal_net::files::certificates("CA bundle", &storage.tls.settings().ca_bundle)?
            .into_iter()
            .filter(|certificate| {
                x509_parser::parse_x509_certificate(certificate.as_ref())
                    .is_ok_and(|(_, parsed)| parsed.subject().as_raw() == parsed.issuer().as_raw())
            })
            .map(|certificate| certificate.to_vec())
            .collect(),
    )
}
