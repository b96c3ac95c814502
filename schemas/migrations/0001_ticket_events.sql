-- One row per ticket event. Zendesk delivers at least once and the sink may re-insert a batch
-- after a crash, so the same event_id can arrive more than once: ReplacingMergeTree collapses
-- rows with the same sorting key (tenant, ticket_id, event_id) in the background, and reports
-- read with FINAL (or count distinct event_id) so a duplicate is never counted twice.
-- The partition is the month Zendesk says the event happened; a duplicate carries the same
-- occurred_at, so it always lands in the same partition as its original.
-- Written for ClickHouse 18.16 (Debian) and current releases alike: no LowCardinality,
-- DateTime64 or Map.
CREATE TABLE IF NOT EXISTS ticket_events
(
    event_id            String,
    tenant              String,
    account_subdomain   String,
    account_id          Int64,
    brand_id            Int64,
    event_type          String,
    zendesk_type        String,
    source              String,
    occurred_at         DateTime,
    received_at         DateTime,
    ticket_id           Int64,
    subject             String,
    status              String,
    previous_status     String,
    priority            String,
    ticket_type         String,
    tags                Array(String),
    channel             String,
    via                 String,
    requester_id        Int64,
    requester_email     String,
    requester_phone     String,
    assignee_id         Int64,
    group_id            Int64,
    custom_field_ids    Array(Int64),
    custom_field_values Array(String)
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant, ticket_id, event_id)
