-- What the reports read: one live row per ticket (ticket_rows) and one per customer
-- (customer_rows), in plain columns, so a report is a scan with sum(sign) and never merges
-- per-ticket state at read time (merging ticket_facts' states took 1–3 s a report over a year
-- of 10 million events on ClickHouse 18.16, which has no SimpleAggregateFunction;
-- docs/benchmarks.md, "Reports").
--
-- The sink's ticket-rows consumer (pipeline/ticketrows.go, analytics/ticketrows.go) writes
-- them: it reads the live rows of a batch's tickets, folds the batch's events into them with
-- rules that give the same answer however often and in whatever order an event is seen (min,
-- max, latest-wins with a fixed tie-break), and writes a cancel row (sign -1, a copy of the
-- old row) and the new row (sign +1) for each ticket that changed. A ticket whose rows already
-- say what the events say gets nothing, so a redelivered batch writes nothing. Until
-- ClickHouse collapses the pairs in the background, every query weighs rows by sign.
--
-- ticket_rows holds the fold's state (what the next event is folded into) and, derived from
-- it when the row is written, what the reports read (reports/reports.go has the meanings):
--   opened_key     min of (event isn't 'created') << 32 | occurred_at: the created event when
--                  there is one, the earliest event otherwise; created_s is its low half.
--   closed_min     the earliest event with status 'closed' (4294967295 = never): resolved.
--   solved_min, open_max, reopened_flag
--                  reopened = an event saying solved → new/open/pending/hold, or any of those
--                  statuses later than the first solved one.
--   latest_key     max of occurred_at << 1 | (status = 'deleted') over events with a status:
--                  deleted when the latest says so (a deletion wins a tie within one second).
--   dims_at        the latest event's time; brand … assignee are that event's (every event
--                  carries the whole ticket). Events of one second tie-break on the values.
--   requester_at   likewise for the latest event naming a requester.
--   segments, lists
--                  the names of the requester's latest klaviyo_memberships snapshot of each
--                  kind at or before created_s, as the ticket's row was last written.
--   close_bucket   0 open, else the first of 1, 3, 7, 14, 30 days the close came within, 31
--                  later; close_minutes = whole minutes from created_s to closed_s.
CREATE TABLE IF NOT EXISTS ticket_rows
(
    tenant        String,
    ticket_id     Int64,
    opened_key    UInt64,
    closed_min    UInt32,
    solved_min    UInt32,
    open_max      UInt32,
    reopened_flag UInt8,
    latest_key    UInt64,
    dims_at       UInt32,
    brand_id      Int64,
    channel       String,
    priority      String,
    tags          Array(String),
    group_id      Int64,
    assignee_id   Int64,
    requester_at  UInt32,
    requester_id  Int64,
    created_s     UInt32,
    closed_s      UInt32,
    is_closed     UInt8,
    close_bucket  UInt8,
    close_minutes UInt32,
    reopened      UInt8,
    deleted       UInt8,
    segments      Array(String),
    lists         Array(String),
    sign          Int8
)
ENGINE = CollapsingMergeTree(sign)
ORDER BY (tenant, ticket_id);

-- One live row per customer (requester) with their tickets that are not deleted, as parallel
-- arrays sorted by (created, ticket id): the repeat-contact cohorts read customers, not
-- tickets, and filter the arrays by brand, channel and tag.
CREATE TABLE IF NOT EXISTS customer_rows
(
    tenant       String,
    requester_id Int64,
    ticket_ids   Array(Int64),
    created      Array(UInt32),
    brands       Array(Int64),
    channels     Array(String),
    tag_sets     Array(Array(String)),
    sign         Int8
)
ENGINE = CollapsingMergeTree(sign)
ORDER BY (tenant, requester_id);

-- Once, the tickets ticket_events already holds, folded by the same rules (a tie within one
-- second may go the other way; the consumer rewrites such a row when it next sees the ticket).
-- Aliases differ from ticket_events' column names on purpose: in ClickHouse an alias replaces
-- the column of the same name throughout the query.
INSERT INTO ticket_rows
SELECT tenant, ticket_id, f_opened, f_closed, f_solved, f_open, f_reopened, f_latest, f_dims_at, f_brand, f_channel,
    f_priority, f_tags, f_group, f_assignee, f_requester_at, f_requester,
    toUInt32(bitAnd(f_opened, 4294967295)) AS f_created,
    if(f_closed = 4294967295, toUInt32(0), greatest(f_closed, f_created)) AS f_closed_s,
    toUInt8(f_closed != 4294967295) AS f_is_closed,
    if(f_is_closed = 0, toUInt8(0), multiIf(f_closed_s - f_created <= 86400, toUInt8(1), f_closed_s - f_created <= 259200, toUInt8(3),
        f_closed_s - f_created <= 604800, toUInt8(7), f_closed_s - f_created <= 1209600, toUInt8(14),
        f_closed_s - f_created <= 2592000, toUInt8(30), toUInt8(31))),
    if(f_is_closed = 0, toUInt32(0), toUInt32(intDiv(f_closed_s - f_created, 60))),
    toUInt8(f_reopened = 1 OR f_open > f_solved),
    toUInt8(bitAnd(f_latest, 1)),
    if(empty(segs), emptyArrayString(), segs[-1].3),
    if(empty(lsts), emptyArrayString(), lsts[-1].3),
    1
FROM
(
    SELECT tenant, ticket_id, f_opened, f_closed, f_solved, f_open, f_reopened, f_latest, f_dims_at, f_brand, f_channel,
        f_priority, f_tags, f_group, f_assignee, f_requester_at, f_requester,
        arraySort(x -> x.2, arrayFilter(x -> x.1 = 'segment' AND x.2 <= bitAnd(f_opened, 4294967295), snaps)) AS segs,
        arraySort(x -> x.2, arrayFilter(x -> x.1 = 'list' AND x.2 <= bitAnd(f_opened, 4294967295), snaps)) AS lsts
    FROM
    (
        SELECT tenant, ticket_id,
            min(bitOr(bitShiftLeft(toUInt64(event_type != 'created'), 32), toUInt64(toUInt32(occurred_at)))) AS f_opened,
            min(if(status = 'closed', toUInt32(occurred_at), toUInt32(4294967295))) AS f_closed,
            min(if(status = 'solved', toUInt32(occurred_at), toUInt32(4294967295))) AS f_solved,
            max(if(status IN ('new', 'open', 'pending', 'hold'), toUInt32(occurred_at), toUInt32(0))) AS f_open,
            max(toUInt8(previous_status = 'solved' AND status IN ('new', 'open', 'pending', 'hold'))) AS f_reopened,
            max(if(status = '', toUInt64(0), bitOr(bitShiftLeft(toUInt64(toUInt32(occurred_at)), 1), toUInt64(status = 'deleted')))) AS f_latest,
            max(toUInt32(occurred_at)) AS f_dims_at,
            argMax(brand_id, occurred_at) AS f_brand,
            argMax(channel, occurred_at) AS f_channel,
            argMax(priority, occurred_at) AS f_priority,
            argMax(tags, occurred_at) AS f_tags,
            argMax(group_id, occurred_at) AS f_group,
            argMax(assignee_id, occurred_at) AS f_assignee,
            maxIf(toUInt32(occurred_at), requester_id != 0) AS f_requester_at,
            argMaxIf(requester_id, occurred_at, requester_id != 0) AS f_requester
        FROM ticket_events
        GROUP BY tenant, ticket_id
    ) AS t -- current ClickHouse refuses a JOIN of subqueries without aliases, and 18.16 takes them too
    ALL LEFT JOIN
    (
        SELECT tenant, requester_id AS f_requester, groupArray((kind, toUInt32(at), names)) AS snaps
        FROM klaviyo_memberships
        GROUP BY tenant, requester_id
    ) AS m USING (tenant, f_requester)
);

INSERT INTO customer_rows
SELECT tenant, requester_id, arrayMap(x -> x.2, ts), arrayMap(x -> x.1, ts), arrayMap(x -> x.3, ts),
    arrayMap(x -> x.4, ts), arrayMap(x -> x.5, ts), 1
FROM
(
    SELECT tenant, requester_id, arraySort(groupArray((created_s, ticket_id, brand_id, channel, tags))) AS ts
    FROM ticket_rows
    WHERE deleted = 0 AND requester_id != 0
    GROUP BY tenant, requester_id
);

-- ticket_facts is what the reports read before; nothing does now.
DROP TABLE IF EXISTS ticket_facts_mv;
DROP TABLE IF EXISTS ticket_facts;
