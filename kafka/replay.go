package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
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
	HeaderConnection, HeaderTicket, HeaderFailedAt,
}

// ReplayFilter selects dead letters by their headers. The zero filter selects every one.
type ReplayFilter struct {
	Connection string    // HeaderConnection equals this; "" = any
	Ticket     int64     // zenklav-ticket equals this; 0 = any
	Since      time.Time // zenklav-failed-at at or after this; zero = no lower bound
	Until      time.Time // zenklav-failed-at at or before this; zero = no upper bound
	Role       string    // zenklav-role equals this; "" = any
}

// Validate rejects a filter that could only select nothing by mistake. roles are the roles
// whose dead letters the topic holds.
func (f ReplayFilter) Validate(roles []string) error {
	switch {
	case f.Ticket < 0:
		return zenklav.Errorf(zenklav.EINVALID, "ticket %d is not a ticket id", f.Ticket)
	case f.Role != "" && !slices.Contains(roles, f.Role):
		return zenklav.Errorf(zenklav.EINVALID, "role %q is not one of %s", f.Role, strings.Join(roles, ", "))
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
	if f.Connection != "" && h[HeaderConnection] != f.Connection {
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
	From       string // topic/partition/offset in the dead-letter topic
	To         string // the topic it goes back to; "" when it is skipped
	Connection string
	Ticket     string
	Role       string
	Reason     string
	FailedAt   string
}

// ReplayOptions configures Replay.
type ReplayOptions struct {
	Topic  string   // the dead-letter topic to read (schemas.TicketEventsDLQTopic)
	Roles  []string // the roles whose dead letters it holds: Filter.Role must be one
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
func Replay(ctx context.Context, logger *slog.Logger, brokers []string, pub zenklav.Publisher, opts ReplayOptions) (ReplayStats, error) {
	if len(brokers) == 0 || opts.Topic == "" {
		return ReplayStats{}, zenklav.Errorf(zenklav.EINVALID, "replay needs brokers and a dead-letter topic")
	}
	if pub == nil && !opts.DryRun {
		return ReplayStats{}, zenklav.Errorf(zenklav.EINVALID, "replay needs a publisher unless it is a dry run")
	}
	if err := opts.Filter.Validate(opts.Roles); err != nil {
		return ReplayStats{}, err
	}
	ranges, err := partitionRanges(ctx, brokers, opts.Topic)
	if err != nil {
		return ReplayStats{}, err
	}
	r := &replayer{opts: opts, pub: pub, logger: logger.With("topic", opts.Topic)}
	for _, pr := range ranges {
		r.st.Total += pr.end - pr.first
	}
	r.logger.Info("replay started", "partitions", len(ranges), "messages", r.st.Total, "dry_run", opts.DryRun)
	for _, pr := range ranges {
		if err := readRange(ctx, r.logger, brokers, opts.Topic, pr, func(m Message) error {
			err := r.handle(ctx, m)
			r.progress()
			return err
		}); err != nil {
			return r.st, r.stopped(ctx, err)
		}
	}
	if err := r.flush(ctx); err != nil {
		return r.st, err
	}
	r.progress()
	r.logger.Info("replay finished", "scanned", r.st.Scanned, "matched", r.st.Matched, "replayed", r.st.Replayed,
		"skipped", r.st.Skipped, "dry_run", opts.DryRun)
	return r.st, nil
}

// replayer is one run of Replay.
type replayer struct {
	opts   ReplayOptions
	pub    zenklav.Publisher
	logger *slog.Logger
	st     ReplayStats
	batch  []zenklav.Message
	pubErr error // set when a publish failed: the error the run ends with
}

func (r *replayer) progress() {
	if r.opts.Progress != nil {
		r.opts.Progress(r.st)
	}
}

// stopped is the error a run ends with when reading stopped on err.
func (r *replayer) stopped(ctx context.Context, err error) error {
	st := r.st
	switch {
	case r.pubErr != nil:
		return r.pubErr
	case ctx.Err() != nil:
		// Stopped by the operator: what was acknowledged stays replayed, and the error says
		// how much that is.
		return fmt.Errorf("replay interrupted after %d of %d scanned, %d replayed (running it again is safe): %w",
			st.Scanned, st.Total, st.Replayed, context.Cause(ctx))
	}
	return zenklav.Wrap(zenklav.ErrorCode(err), err, "replay stopped after %d of %d scanned, %d replayed (running it again is safe)",
		st.Scanned, st.Total, st.Replayed)
}

// flush publishes the batch.
func (r *replayer) flush(ctx context.Context) error {
	if len(r.batch) == 0 {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.pub.Publish(pctx, r.batch...); err != nil {
		// Part of this batch may have arrived; only what was acknowledged is counted, and
		// sending it again is harmless.
		r.pubErr = zenklav.Wrap(zenklav.ErrorCode(err), err,
			"replay stopped: publishing failed after %d dead letters were replayed (running it again is safe)", r.st.Replayed)
		return r.pubErr
	}
	r.st.Replayed += int64(len(r.batch))
	r.batch = r.batch[:0]
	return nil
}

// handle scans one dead letter: it counts it, and queues it to go back when it matches.
func (r *replayer) handle(ctx context.Context, m Message) error {
	r.st.Scanned++
	h := make(map[string]string, len(m.Headers))
	for _, kh := range m.Headers {
		h[kh.Key] = string(kh.Value)
	}
	if !r.opts.Filter.Matches(h) {
		return nil
	}
	r.st.Matched++
	to := h[HeaderOriginTopic]
	if to == "" || to == r.opts.Topic {
		// Without its origin a dead letter has nowhere to go; sending it to its own topic
		// would only make another copy of it.
		r.st.Skipped++
		level := slog.LevelWarn
		if r.opts.DryRun {
			level = slog.LevelDebug // a dry run lists it through Match already
		}
		r.logger.Log(ctx, level, "dead letter has no origin topic, skipped", "at", Position(m))
		to = ""
	}
	if r.opts.Match != nil {
		r.opts.Match(ReplayMatch{From: Position(m), To: to, Connection: h[HeaderConnection], Ticket: h[HeaderTicket],
			Role: h[HeaderRole], Reason: h[HeaderReason], FailedAt: h[HeaderFailedAt]})
	}
	if to == "" || r.opts.DryRun {
		return nil
	}
	r.batch = append(r.batch, replayed(m, h, to))
	if len(r.batch) >= replayBatch {
		return r.flush(ctx)
	}
	return nil
}

// replayed is dead letter m as it goes back to topic to: key and value untouched, the
// dead-letter headers swapped for where it was replayed from.
func replayed(m Message, h map[string]string, to string) zenklav.Message {
	out := zenklav.Message{Topic: to, Key: m.Key, Value: m.Value, Headers: map[string]string{HeaderReplayedFrom: Position(m)}}
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
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	parts, err := partitions(ctx, client, brokers, topic)
	if err != nil {
		return nil, err
	}
	var reqs []kafkago.OffsetRequest
	for _, p := range parts {
		reqs = append(reqs, kafkago.FirstOffsetOf(p), kafkago.LastOffsetOf(p))
	}
	resp, err := client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
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
func readRange(ctx context.Context, logger *slog.Logger, brokers []string, topic string, r offsetRange, handle func(Message) error) error {
	rd := kafkago.NewReader(kafkago.ReaderConfig{
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
