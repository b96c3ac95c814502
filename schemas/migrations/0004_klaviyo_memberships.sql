-- Snapshots of the Klaviyo segments and lists a customer (a ticket's requester) belonged to,
-- as the agent sidebar read them from Klaviyo at `at`. The segments report counts a ticket
-- under the names of its requester's latest snapshot at or before the ticket's creation.
-- An empty names array is a snapshot too: in none. Customers the sidebar never showed have
-- no snapshot, and their tickets count under no segment. Recording the same snapshot twice
-- is harmless: rows with the same key collapse, and the report reads one snapshot per time.
CREATE TABLE IF NOT EXISTS klaviyo_memberships
(
    tenant       String,
    kind         String,
    requester_id Int64,
    at           DateTime,
    names        Array(String)
)
ENGINE = ReplacingMergeTree()
ORDER BY (tenant, kind, requester_id, at)
