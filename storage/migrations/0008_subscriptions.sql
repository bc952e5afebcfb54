-- FHIR subscriptions (R4 Subscriptions Backport IG, topic-based) and their notifications.
-- One row per subscription: who owns it (the owner's certificate, so every delivery can
-- re-check what that identity may read), the FHIR base it was created at (for the
-- references in its notifications), its topic and filters, its channel, its status,
-- and its counters: `events` is the number of the last event recorded for it (events are
-- numbered 1, 2, 3… per subscription), `delivered` the number of the last one delivered.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    owner_role TEXT NOT NULL,
    owner_certificate BYTEA NOT NULL,
    base_url TEXT NOT NULL,
    topic TEXT NOT NULL,
    patient TEXT,
    code TEXT,
    channel TEXT NOT NULL,
    endpoint TEXT,
    content TEXT NOT NULL,
    heartbeat_secs BIGINT,
    max_count BIGINT NOT NULL,
    reason TEXT NOT NULL,
    end_at BIGINT,
    status TEXT NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL,
    events BIGINT NOT NULL,
    delivered BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL
);
CREATE INDEX subscriptions_topic ON subscriptions (topic, status);

-- Every notification event, kept until its subscription is deleted (so `$events` can
-- return what a subscriber missed). `event_key` names what happened (`obs:<leaf>`,
-- `raised:<alert>`, `acknowledged:<alert>`) so an event is never recorded twice;
-- `resource` is the focus resource as rendered when the event happened.
CREATE TABLE subscription_events (
    subscription TEXT NOT NULL,
    number BIGINT NOT NULL,
    event_key TEXT NOT NULL,
    at BIGINT NOT NULL,
    patient TEXT NOT NULL,
    focus_type TEXT NOT NULL,
    focus_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    PRIMARY KEY (subscription, number),
    UNIQUE (subscription, event_key)
);

-- How far the subscription matcher has read the batch log (`batch_log`): the entry of
-- the last batch turned into events, moved in the same transaction as those events.
CREATE TABLE subscription_cursor (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
