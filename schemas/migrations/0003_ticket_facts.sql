-- One row per ticket (after background merges) with what the reports need to know of it,
-- filled on the way in so a report reads about one row per ticket instead of every event.
-- Every column is the state of an aggregate that gives the same answer however often an
-- event is seen (min, max, argMax), so a redelivered event, or a batch the sink inserts
-- again after a crash, changes nothing. Reports merge the states (GROUP BY tenant,
-- ticket_id with -Merge) because rows of one ticket collapse only when ClickHouse gets to
-- merge their parts.
--
-- What the reports mean, in the terms of reports/reports.go:
--   created  (opened)   the created event's occurred_at; when the created event never arrived,
--                       the ticket's earliest event. opened_state packs both into one UInt64,
--                       (event_type != 'created') << 32 | occurred_at, so its min is the created
--                       event when there is one and the earliest event otherwise.
--   resolved            the ticket became closed: the earliest event with status 'closed'
--                       (closed_state; 4294967295 = never). Solved is not resolved.
--   reopened            solved, then new/open/pending/hold again: an event that says so
--                       (previous_status 'solved', status new/open/pending/hold, reopened_state),
--                       or an event with one of those statuses later than the first solved one
--                       (open_state > solved_state), for deliveries that carry no previous status.
--   deleted             the latest event with a status says 'deleted' (latest_state packs
--                       occurred_at << 1 | deleted, so a deletion wins a tie within one second).
--                       Deleted tickets count in no report, as in the sidebar's history.
--   brand, channel, …   the value on the ticket's latest event (every event carries the whole
--                       ticket); events of one second are not ordered among themselves.
-- Written for ClickHouse 18.16: no SimpleAggregateFunction, so even min and max are states;
-- the states are numbers wherever they can be, as those merge fastest.
CREATE TABLE IF NOT EXISTS ticket_facts
(
    tenant          String,
    ticket_id       Int64,
    opened_state    AggregateFunction(min, UInt64),
    closed_state    AggregateFunction(min, UInt32),
    solved_state    AggregateFunction(min, UInt32),
    open_state      AggregateFunction(max, UInt32),
    reopened_state  AggregateFunction(max, UInt8),
    latest_state    AggregateFunction(max, UInt64),
    brand_state     AggregateFunction(argMax, Int64, DateTime),
    channel_state   AggregateFunction(argMax, String, DateTime),
    priority_state  AggregateFunction(argMax, String, DateTime),
    tags_state      AggregateFunction(argMax, Array(String), DateTime),
    group_state     AggregateFunction(argMax, Int64, DateTime),
    assignee_state  AggregateFunction(argMax, Int64, DateTime),
    requester_state AggregateFunction(argMaxIf, Int64, DateTime, UInt8)
)
ENGINE = AggregatingMergeTree()
ORDER BY (tenant, ticket_id);

-- The aliases are the target's column names and differ from ticket_events' on purpose: in
-- ClickHouse an alias replaces the column of the same name throughout the query.
CREATE MATERIALIZED VIEW IF NOT EXISTS ticket_facts_mv TO ticket_facts AS
SELECT
    tenant,
    ticket_id,
    minState(bitOr(bitShiftLeft(toUInt64(event_type != 'created'), 32), toUInt64(toUInt32(occurred_at)))) AS opened_state,
    minState(if(status = 'closed', toUInt32(occurred_at), toUInt32(4294967295))) AS closed_state,
    minState(if(status = 'solved', toUInt32(occurred_at), toUInt32(4294967295))) AS solved_state,
    maxState(if(status IN ('new', 'open', 'pending', 'hold'), toUInt32(occurred_at), toUInt32(0))) AS open_state,
    maxState(toUInt8(previous_status = 'solved' AND status IN ('new', 'open', 'pending', 'hold'))) AS reopened_state,
    maxState(if(status = '', toUInt64(0), bitOr(bitShiftLeft(toUInt64(toUInt32(occurred_at)), 1), toUInt64(status = 'deleted')))) AS latest_state,
    argMaxState(brand_id, occurred_at) AS brand_state,
    argMaxState(channel, occurred_at) AS channel_state,
    argMaxState(priority, occurred_at) AS priority_state,
    argMaxState(tags, occurred_at) AS tags_state,
    argMaxState(group_id, occurred_at) AS group_state,
    argMaxState(assignee_id, occurred_at) AS assignee_state,
    argMaxIfState(requester_id, occurred_at, requester_id != 0) AS requester_state
FROM ticket_events
GROUP BY tenant, ticket_id;

-- And once from what ticket_events held before the view existed. An event inserted between
-- the two statements is counted by both, which the aggregates make harmless.
INSERT INTO ticket_facts (tenant, ticket_id, opened_state, closed_state, solved_state, open_state, reopened_state,
    latest_state, brand_state, channel_state, priority_state, tags_state, group_state, assignee_state, requester_state)
SELECT
    tenant,
    ticket_id,
    minState(bitOr(bitShiftLeft(toUInt64(event_type != 'created'), 32), toUInt64(toUInt32(occurred_at)))),
    minState(if(status = 'closed', toUInt32(occurred_at), toUInt32(4294967295))),
    minState(if(status = 'solved', toUInt32(occurred_at), toUInt32(4294967295))),
    maxState(if(status IN ('new', 'open', 'pending', 'hold'), toUInt32(occurred_at), toUInt32(0))),
    maxState(toUInt8(previous_status = 'solved' AND status IN ('new', 'open', 'pending', 'hold'))),
    maxState(if(status = '', toUInt64(0), bitOr(bitShiftLeft(toUInt64(toUInt32(occurred_at)), 1), toUInt64(status = 'deleted')))),
    argMaxState(brand_id, occurred_at),
    argMaxState(channel, occurred_at),
    argMaxState(priority, occurred_at),
    argMaxState(tags, occurred_at),
    argMaxState(group_id, occurred_at),
    argMaxState(assignee_id, occurred_at),
    argMaxIfState(requester_id, occurred_at, requester_id != 0)
FROM ticket_events
GROUP BY tenant, ticket_id;
