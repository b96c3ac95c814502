-- Which tickets each requester has had: the index Open_tickets (the requester's count of
-- tickets not yet closed) starts from. The sorting key starts with (tenant, requester_id), so
-- one requester's tickets are read from the primary index rather than scanned for; their
-- latest status and requester are then read from ticket_events by ticket_id, its own index.
-- A ticket that moved to another requester stays listed under the old one too, and the
-- latest requester decides whose it is.
CREATE TABLE IF NOT EXISTS ticket_requesters
(
    tenant       String,
    requester_id Int64,
    ticket_id    Int64
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant, requester_id, ticket_id);

-- Filled on the way in from every insert into ticket_events.
CREATE MATERIALIZED VIEW IF NOT EXISTS ticket_requesters_mv TO ticket_requesters AS
SELECT tenant, requester_id, ticket_id
FROM ticket_events
WHERE requester_id != 0;

-- And once from what ticket_events held before the view existed.
INSERT INTO ticket_requesters (tenant, requester_id, ticket_id)
SELECT tenant, requester_id, ticket_id
FROM ticket_events
WHERE requester_id != 0;
