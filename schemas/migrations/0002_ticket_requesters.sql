-- The latest status of every ticket, by requester: what Open_tickets (the requester's count of
-- tickets not yet closed) is counted from. ReplacingMergeTree keeps, per ticket, the row with
-- the latest occurred_at, and the sorting key starts with (tenant, requester_id), so one
-- requester's tickets are read from the primary index rather than scanned for.
CREATE TABLE IF NOT EXISTS ticket_requesters
(
    tenant       String,
    requester_id Int64,
    ticket_id    Int64,
    status       String,
    occurred_at  DateTime
)
ENGINE = ReplacingMergeTree(occurred_at)
ORDER BY (tenant, requester_id, ticket_id);

-- Filled on the way in from every insert into ticket_events. Events that say nothing of the
-- status or the requester are left out.
CREATE MATERIALIZED VIEW IF NOT EXISTS ticket_requesters_mv TO ticket_requesters AS
SELECT tenant, requester_id, ticket_id, status, occurred_at
FROM ticket_events
WHERE requester_id != 0 AND status != '';

-- And once from what ticket_events held before the view existed.
INSERT INTO ticket_requesters (tenant, requester_id, ticket_id, status, occurred_at)
SELECT tenant, requester_id, ticket_id, status, occurred_at
FROM ticket_events
WHERE requester_id != 0 AND status != '';
