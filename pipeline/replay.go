package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
)

// HeaderReplayedFrom marks a message that `zenklav replay` sent back from a dead-letter topic:
// its value is the dead letter's topic/partition/offset, so a message that fails again can be
// traced to the earlier failure.
const HeaderReplayedFrom = "zenklav-replayed-from"

// deadLetterHeaders are the headers DeadLetter adds. Replay drops them: they describe the
// failure, not the message, and the consumer that gets the message again must not see it as
// a dead letter.
var deadLetterHeaders = []string{
	HeaderRole, HeaderReason, HeaderResponse, HeaderOrigin, HeaderOriginTopic,
	HeaderTenant, HeaderTicket, HeaderFailedAt,
}

// ReplayRoles are the roles whose dead letters land in ticket-events.dlq.v1.
var ReplayRoles = []string{"emitter", "sink"}

// ReplayFilter selects dead letters by their headers. The zero filter selects every one.
type ReplayFilter struct {
	Connection string    // zenklav-tenant equals this; "" = any
	Ticket     int64     // zenklav-ticket equals this; 0 = any
	Since      time.Time // zenklav-failed-at at or after this; zero = no lower bound
	Until      time.Time // zenklav-failed-at at or before this; zero = no upper bound
	Role       string    // zenklav-role equals this; "" = any
}

// Validate rejects a filter that could only select nothing by mistake.
func (f ReplayFilter) Validate() error {
	switch {
	case f.Ticket < 0:
		return zenklav.Errorf(zenklav.EINVALID, "ticket %d is not a ticket id", f.Ticket)
	case f.Role != "" && !slices.Contains(ReplayRoles, f.Role):
		return zenklav.Errorf(zenklav.EINVALID, "role %q is not one of %s", f.Role, strings.Join(ReplayRoles, ", "))
	case !f.Since.IsZero() && !f.Until.IsZero() && f.Since.After(f.Until):
		return zenklav.Errorf(zenklav.EINVALID, "since (%s) is after until (%s)",
			f.Since.UTC().Format(time.RFC3339), f.Until.UTC().Format(time.RFC3339))
	}
	return nil
}

// Matches reports whether a dead letter with headers h is selected. A filter on a header the
// dead letter lacks (or carries in a form that does not parse) does not match: replaying more
// than the operator asked for is the mistake to avoid.
func (f ReplayFilter) Matches(h map[string]string) bool {
	if f.Connection != "" && h[HeaderTenant] != f.Connection {
		return false
	}
	if f.Role != "" && h[HeaderRole] != f.Role {
		return false
	}
	if f.Ticket != 0 {
		id, err := strconv.ParseInt(strings.TrimSpace(h[HeaderTicket]), 10, 64)
		if err != nil || id != f.Ticket {
			return false
		}
	}
	if !f.Since.IsZero() || !f.Until.IsZero() {
		at, err := time.Parse(time.RFC3339, h[HeaderFailedAt])
		if err != nil || (!f.Since.IsZero() && at.Before(f.Since)) || (!f.Until.IsZero() && at.After(f.Until)) {
			return false
		}
	}
	return true
}

// ReplayStats counts what a replay did.
type ReplayStats struct {
	Total    int64 // messages in the dead-letter topic when the run started: what it scans
	Scanned  int64 // messages read so far
	Matched  int64 // scanned messages the filter selected (Skipped included)
	Replayed int64 // matched messages sent back and acknowledged; 0 in a dry run
	Skipped  int64 // matched messages with no usable origin topic header, left where they are
}

// ReplayMatch describes one dead letter the filter selected.
type ReplayMatch struct {
	From     string // topic/partition/offset in the dead-letter topic
	To       string // the topic it goes back to; "" when it is skipped
	Tenant   string
	Ticket   string
	Role     string
	Reason   string
	FailedAt string
}

// ReplayOptions configures Replay.
type ReplayOptions struct {
	Topic  string // the dead-letter topic to read (schemas.TicketEventsDLQTopic)
	Filter ReplayFilter
	DryRun bool // count and describe the matches; send nothing
	// Progress, when set, is called after every scanned message and once at the end. Match,
	// when set, is called for every matching dead letter. Both run on Replay's goroutine.
	Progress func(ReplayStats)
	Match    func(ReplayMatch)
}

// replayBatch is how many messages one Publish sends: large enough that the brokers'
// round trips do not dominate, small enough that a failure leaves little in doubt.
const replayBatch = 500

// replayIdle is how long a partition may give no message while offsets below its end remain
// unread. Offsets are contiguous in zenklav's topics (never compacted, no transactions), so
// silence this long means the brokers are not answering, and the run stops with an error
// instead of hanging.
const replayIdle = 30 * time.Second

// Replay sends the dead letters of opts.Topic that match opts.Filter back to the topic named
// in their zenklav-origin-topic header, with their original key and value; their dead-letter
// headers are replaced by zenklav-replayed-from. It reads each partition from its first
// offset up to the end offset it saw at the start, without a consumer group: a message that
// fails again while the replay runs is dead-lettered past that end and waits for the next run,
// so a run always ends. Sending twice is safe because every consumer is idempotent (Klaviyo
// dedups on unique_id, ClickHouse collapses rows on event_id). A publish failure stops the
// run with an error that says how many were replayed.
func Replay(ctx context.Context, logger *slog.Logger, brokers []string, pub Publisher, opts ReplayOptions) (ReplayStats, error) {
	var st ReplayStats
	if len(brokers) == 0 || opts.Topic == "" {
		return st, zenklav.Errorf(zenklav.EINVALID, "replay needs brokers and a dead-letter topic")
	}
	if pub == nil && !opts.DryRun {
		return st, zenklav.Errorf(zenklav.EINVALID, "replay needs a publisher unless it is a dry run")
	}
	if err := opts.Filter.Validate(); err != nil {
		return st, err
	}
	ranges, err := partitionRanges(ctx, brokers, opts.Topic)
	if err != nil {
		return st, err
	}
	for _, r := range ranges {
		st.Total += r.end - r.first
	}
	logger = logger.With("topic", opts.Topic)
	logger.Info("replay started", "partitions", len(ranges), "messages", st.Total, "dry_run", opts.DryRun)
	progress := func() {
		if opts.Progress != nil {
			opts.Progress(st)
		}
	}

	var batch []Message
	var pubErr error // set when a publish failed: the error the run ends with
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := pub.Publish(pctx, batch...); err != nil {
			// Part of this batch may have arrived; only what was acknowledged is counted, and
			// sending it again is harmless.
			pubErr = zenklav.Wrap(zenklav.ErrorCode(err), err,
				"replay stopped: publishing failed after %d dead letters were replayed (running it again is safe)", st.Replayed)
			return pubErr
		}
		st.Replayed += int64(len(batch))
		batch = batch[:0]
		return nil
	}
	handle := func(m kafka.Message) error {
		st.Scanned++
		h := make(map[string]string, len(m.Headers))
		for _, kh := range m.Headers {
			h[kh.Key] = string(kh.Value)
		}
		if !opts.Filter.Matches(h) {
			return nil
		}
		st.Matched++
		to := h[HeaderOriginTopic]
		if to == "" || to == opts.Topic {
			// Without its origin a dead letter has nowhere to go; sending it to its own topic
			// would only make another copy of it.
			st.Skipped++
			level := slog.LevelWarn
			if opts.DryRun {
				level = slog.LevelDebug // a dry run lists it through Match already
			}
			logger.Log(ctx, level, "dead letter has no origin topic, skipped", "at", position(m))
			to = ""
		}
		if opts.Match != nil {
			opts.Match(ReplayMatch{From: position(m), To: to, Tenant: h[HeaderTenant], Ticket: h[HeaderTicket],
				Role: h[HeaderRole], Reason: h[HeaderReason], FailedAt: h[HeaderFailedAt]})
		}
		if to == "" || opts.DryRun {
			return nil
		}
		batch = append(batch, replayed(m, h, to))
		if len(batch) >= replayBatch {
			return flush()
		}
		return nil
	}

	for _, r := range ranges {
		if err := readRange(ctx, logger, brokers, opts.Topic, r, func(m kafka.Message) error {
			err := handle(m)
			progress()
			return err
		}); err != nil {
			switch {
			case pubErr != nil:
				return st, pubErr
			case ctx.Err() != nil:
				// Stopped by the operator: what was acknowledged stays replayed, and the
				// error says how much that is.
				return st, fmt.Errorf("replay interrupted after %d of %d scanned, %d replayed (running it again is safe): %w",
					st.Scanned, st.Total, st.Replayed, context.Cause(ctx))
			default:
				return st, zenklav.Wrap(zenklav.ErrorCode(err), err, "replay stopped after %d of %d scanned, %d replayed (running it again is safe)",
					st.Scanned, st.Total, st.Replayed)
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	progress()
	logger.Info("replay finished", "scanned", st.Scanned, "matched", st.Matched, "replayed", st.Replayed, "skipped", st.Skipped, "dry_run", opts.DryRun)
	return st, nil
}

// replayed is dead letter m as it goes back to topic to: key and value untouched, the
// dead-letter headers swapped for where it was replayed from.
func replayed(m kafka.Message, h map[string]string, to string) Message {
	out := Message{Topic: to, Key: m.Key, Value: m.Value, Headers: map[string]string{HeaderReplayedFrom: position(m)}}
	for k, v := range h {
		if !slices.Contains(deadLetterHeaders, k) && k != HeaderReplayedFrom {
			out.Headers[k] = v
		}
	}
	return out
}

// offsetRange is the part of one partition a replay reads: [first, end).
type offsetRange struct {
	partition  int
	first, end int64
}

// partitionRanges lists, for every partition of topic, its first offset and its end offset
// now. The end is fixed here, at the start, which is what makes a replay finish.
func partitionRanges(ctx context.Context, brokers []string, topic string) ([]offsetRange, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "kafka metadata")
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return nil, zenklav.Errorf(zenklav.ENOTFOUND, "topic %s not found on %s", topic, strings.Join(brokers, ","))
	}
	var reqs []kafka.OffsetRequest
	for _, p := range meta.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "list offsets of %s", topic)
	}
	var out []offsetRange
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, po.Error, "list offsets of %s/%d", topic, po.Partition)
		}
		if po.LastOffset > po.FirstOffset {
			out = append(out, offsetRange{partition: po.Partition, first: po.FirstOffset, end: po.LastOffset})
		}
	}
	// Partition order makes runs and their logs comparable; Kafka answers in any order.
	slices.SortFunc(out, func(a, b offsetRange) int { return a.partition - b.partition })
	return out, nil
}

// readRange calls handle for every message of r, in offset order.
func readRange(ctx context.Context, logger *slog.Logger, brokers []string, topic string, r offsetRange, handle func(kafka.Message) error) error {
	rd := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     brokers,
		Topic:       topic,
		Partition:   r.partition,
		MinBytes:    1,
		MaxBytes:    4 << 20,
		MaxWait:     250 * time.Millisecond,
		ErrorLogger: kafkaLogger(logger.With("kafka", "reader")),
	})
	defer func() {
		if err := rd.Close(); err != nil {
			logger.Warn("close kafka reader", "err", err)
		}
	}()
	if err := rd.SetOffset(r.first); err != nil {
		return fmt.Errorf("seek %s/%d to %d: %w", topic, r.partition, r.first, err)
	}
	for next := r.first; next < r.end; {
		fctx, cancel := context.WithTimeout(ctx, replayIdle)
		m, err := rd.FetchMessage(fctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "read %s/%d at offset %d (end %d)", topic, r.partition, next, r.end)
		}
		if m.Offset >= r.end {
			break // dead-lettered after the run started: the next run takes it
		}
		next = m.Offset + 1
		if err := handle(m); err != nil {
			return err
		}
	}
	return nil
}
