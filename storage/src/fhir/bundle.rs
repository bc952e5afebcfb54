//! `Bundle` of type `searchset`: the answer to every search, with `self`, `first`,
//! `next` and `previous` links where the search pages.
//!
//! Entries keep their resources typed (not `serde_json::Value`), so an Observation's
//! exact decimals reach the wire unchanged.

use serde::Serialize;

use super::observation::Observation;

/// A `searchset` Bundle of resources of type `R`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle<R> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<Entry<R>>,
}

/// A `Bundle.link`.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    relation: &'static str,
    url: String,
}

/// A `Bundle.entry` found by the search.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry<R> {
    full_url: String,
    resource: R,
    search: Search,
}

/// `Bundle.entry.search`.
#[derive(Debug, Clone, Serialize)]
pub struct Search {
    mode: &'static str,
}

impl<R: Serialize> Bundle<R> {
    /// A searchset of `(fullUrl, resource)` pairs, all matches.
    pub fn searchset(entries: Vec<(String, R)>) -> Self {
        Self {
            resource_type: "Bundle",
            kind: "searchset",
            total: None,
            link: Vec::new(),
            entry: entries
                .into_iter()
                .map(|(full_url, resource)| Entry {
                    full_url,
                    resource,
                    search: Search { mode: "match" },
                })
                .collect(),
        }
    }

    /// Sets `total`: how many resources match the whole search.
    #[must_use]
    pub fn total(mut self, total: u64) -> Self {
        self.total = Some(total);
        self
    }

    /// Adds a link (`self`, `first`, `next`, `previous`).
    #[must_use]
    pub fn link(mut self, relation: &'static str, url: String) -> Self {
        self.link.push(Link { relation, url });
        self
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entry.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entry.is_empty()
    }
}

/// A searchset of Observations with `total` set, unpaged (full URLs are
/// `urn:wardseal:observation:<leaf>`): for callers outside a FHIR request.
pub fn bundle(observations: Vec<Observation>) -> Bundle<Observation> {
    let total = u64::try_from(observations.len()).unwrap_or(u64::MAX);
    Bundle::searchset(
        observations
            .into_iter()
            .map(|observation| {
                (
                    format!("urn:wardseal:observation:{}", observation.id()),
                    observation,
                )
            })
            .collect(),
    )
    .total(total)
}
