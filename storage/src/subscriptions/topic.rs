//! The subscription topics storage offers, by canonical URL.
//!
//! FHIR R4 has no `SubscriptionTopic` resource; the Subscriptions Backport IG lets an R4
//! server name its topics by canonical URL and advertise them in its
//! CapabilityStatement (extension `capabilitystatement-subscriptiontopic-canonical` on
//! the `Subscription` resource entry). [`capability_extensions`] gives those
//! extensions, for whoever writes `/fhir/metadata`; [`TOPICS`] describes each topic
//! (the resource it is about and the filters it accepts) for the documentation and for
//! clients.

use serde_json::{Value, json};

/// The base of the topics' canonical URLs: the project's own address.
pub const TOPIC_BASE: &str = concat!(env!("CARGO_PKG_REPOSITORY"), "/fhir/SubscriptionTopic/");

/// The CapabilityStatement extension naming a supported topic (Backport IG).
pub const TOPIC_CANONICAL_EXTENSION: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical";

/// What a subscription can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A new Observation of a patient (a reading stored from a card-signed batch).
    ObservationCreated,
    /// An alert raised (a `Flag`: clinical or technical, of a patient).
    AlertRaised,
    /// An alert acknowledged by a clinician (a `Flag`).
    AlertAcknowledged,
}

/// One topic as clients see it.
#[derive(Debug, Clone, Copy)]
pub struct TopicDescription {
    /// The topic.
    pub topic: Topic,
    /// A sentence saying what triggers it.
    pub description: &'static str,
    /// The resource type notifications carry.
    pub resource: &'static str,
    /// The filters (`backport-filter-criteria` search parameters) it accepts.
    pub filters: &'static [&'static str],
}

/// Every topic.
pub const TOPICS: [TopicDescription; 3] = [
    TopicDescription {
        topic: Topic::ObservationCreated,
        description: "A new Observation of a patient: a reading stored from a card-signed batch",
        resource: "Observation",
        filters: &["patient", "code"],
    },
    TopicDescription {
        topic: Topic::AlertRaised,
        description: "An alert raised about a patient (clinical limit crossed, or technical)",
        resource: "Flag",
        filters: &["patient"],
    },
    TopicDescription {
        topic: Topic::AlertAcknowledged,
        description: "An alert about a patient acknowledged by a clinician",
        resource: "Flag",
        filters: &["patient"],
    },
];

impl Topic {
    /// The short name, last segment of the canonical URL.
    pub const fn name(self) -> &'static str {
        match self {
            Topic::ObservationCreated => "observation-created",
            Topic::AlertRaised => "alert-raised",
            Topic::AlertAcknowledged => "alert-acknowledged",
        }
    }

    /// The canonical URL (what `Subscription.criteria` holds).
    pub fn canonical(self) -> String {
        format!("{TOPIC_BASE}{}", self.name())
    }

    /// The topic with canonical URL `url` (a `|version` suffix is ignored).
    pub fn from_canonical(url: &str) -> Option<Self> {
        let url = url.split('|').next().unwrap_or(url);
        let name = url.strip_prefix(TOPIC_BASE)?;
        TOPICS
            .iter()
            .map(|described| described.topic)
            .find(|topic| topic.name() == name)
    }

    /// The topic's description.
    pub fn description(self) -> &'static TopicDescription {
        match self {
            Topic::ObservationCreated => &TOPICS[0],
            Topic::AlertRaised => &TOPICS[1],
            Topic::AlertAcknowledged => &TOPICS[2],
        }
    }
}

/// The extensions a CapabilityStatement's `rest.resource` entry for `Subscription`
/// carries to advertise the topics (one `capabilitystatement-subscriptiontopic-canonical`
/// per topic).
pub fn capability_extensions() -> Vec<Value> {
    TOPICS
        .iter()
        .map(|described| {
            json!({
                "url": TOPIC_CANONICAL_EXTENSION,
                "valueCanonical": described.topic.canonical(),
            })
        })
        .collect()
}

/// The CapabilityStatement `rest.resource` entry for `Subscription`: the interactions and
/// operations served, the backport profile and the topics.
pub fn capability_resource() -> Value {
    json!({
        "extension": capability_extensions(),
        "type": "Subscription",
        "supportedProfile": [super::resource::BACKPORT_SUBSCRIPTION_PROFILE],
        "interaction": [
            {"code": "read"}, {"code": "create"}, {"code": "delete"}, {"code": "search-type"}
        ],
        "operation": [
            {"name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"},
            {"name": "events", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"},
            {"name": "get-ws-binding-token", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token"}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_urls_round_trip_and_others_are_refused() {
        for described in TOPICS {
            let url = described.topic.canonical();
            assert!(url.starts_with("https://"), "{url}");
            assert_eq!(Topic::from_canonical(&url), Some(described.topic));
            assert_eq!(
                Topic::from_canonical(&format!("{url}|1.0")),
                Some(described.topic)
            );
            assert_eq!(described.topic.description().topic, described.topic);
        }
        assert_eq!(
            Topic::from_canonical("http://hl7.org/SubscriptionTopic/admission"),
            None
        );
        assert_eq!(Topic::from_canonical(&format!("{TOPIC_BASE}other")), None);
        assert_eq!(capability_extensions().len(), 3);
    }
}
