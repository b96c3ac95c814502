package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
)

// TestReplayCommandRejectsBadFlags: a bad flag ends the command with an error that names it,
// before Kafka is asked anything (the brokers here do not exist, so reaching them would give
// a different error).
func TestReplayCommandRejectsBadFlags(t *testing.T) {
	env := map[string]string{"ZENKLAV_KAFKA_BROKERS": "127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--tenant", "acme"}, "flag provided but not defined: -tenant"},
		{"ticket not a number", []string{"--ticket", "abc"}, `--ticket="abc" is not a ticket id`},
		{"ticket zero", []string{"--ticket=0"}, "--ticket"},
		{"unknown role", []string{"--role", "api"}, `role "api" is not one of emitter, sink, sms`},
		{"since not a time", []string{"--since", "yesterday"}, `--since="yesterday" is neither an RFC 3339 time`},
		{"negative duration", []string{"--until=-5h"}, "--until"},
		{"since after until", []string{"--since", "2025-03-02T00:00:00Z", "--until", "2025-03-01T00:00:00Z"}, "is after until"},
		{"empty connection", []string{"--connection="}, "--connection is empty"},
		{"positional argument", []string{"42"}, `unexpected argument "42"`},
		{"flag without value", []string{"--ticket"}, "flag needs an argument: -ticket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"replay"}, tc.args...), func(k string) string { return env[k] }, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("replay %q = %v, want an error containing %q", tc.args, err, tc.want)
			}
			if strings.Contains(out.String(), "scanned") {
				t.Errorf("replay with a bad flag started a run:\n%s", out.String())
			}
		})
	}
}

// Each role's dead letters are replayed from its own topic: --role sms reads the SMS events'.
func TestReplayRoleTopic(t *testing.T) {
	for role, want := range map[string]string{"": schemas.TicketEventsDLQTopic, "sink": schemas.TicketEventsDLQTopic, "sms": schemas.SMSEventsDLQTopic} {
		args := []string{}
		if role != "" {
			args = []string{"--role", role}
		}
		opts, err := parseReplayFlags(args, time.Now(), &bytes.Buffer{})
		if err != nil || opts.Topic != want {
			t.Errorf("replay %q reads %q (%v), want %s", args, opts.Topic, err, want)
		}
	}
}

func TestReplayCommandNeedsBrokers(t *testing.T) {
	err := run(context.Background(), []string{"replay", "--dry-run"}, func(string) string { return "" }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "ZENKLAV_KAFKA_BROKERS is empty") || !strings.Contains(err.Error(), "zenklav all") {
		t.Fatalf("replay without brokers = %v, want an error about ZENKLAV_KAFKA_BROKERS and the embedded broker", err)
	}
}

func TestReplayCommandHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"replay", "-h"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{schemas.TicketEventsDLQTopic, "-connection", "-ticket", "-since", "-until", "-role", "-dry-run"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("replay -h does not mention %s:\n%s", want, out.String())
		}
	}
}

// TestReplayCommand runs `zenklav replay` against the real Kafka and its real dead-letter
// topic, which other tests share: a connection of its own keeps their dead letters out of its
// filters, and its dead letters point at a topic of its own.
func TestReplayCommand(t *testing.T) {
	brokers := []string{testenv.Kafka(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	origin := fmt.Sprintf("test-replay-command-%d", rand.N(1_000_000))
	tenant := fmt.Sprintf("replay-%d", rand.N(1_000_000))
	if err := kafka.EnsureTopics(ctx, brokers,
		kafka.Topic{Name: origin, Partitions: 1},
		kafka.Topic{Name: schemas.TicketEventsDLQTopic, Partitions: 4},
	); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	dead := func(ticket, role string, failed time.Time, to string) zenklav.Message {
		h := map[string]string{
			kafka.HeaderConnection: tenant, kafka.HeaderTicket: ticket, kafka.HeaderRole: role,
			kafka.HeaderReason: "klaviyo said 400", kafka.HeaderFailedAt: failed.Format(time.RFC3339),
			kafka.HeaderOrigin: origin + "/0/1",
		}
		if to != "" {
			h[kafka.HeaderOriginTopic] = to
		}
		return zenklav.Message{Topic: schemas.TicketEventsDLQTopic, Key: []byte(tenant + "/" + ticket), Value: []byte("ticket " + ticket), Headers: h}
	}
	p := kafka.NewProducer(slog.New(slog.DiscardHandler), brokers)
	defer p.Close()
	if err := p.Publish(ctx,
		dead("1", "sink", now.Add(-2*time.Hour), origin),
		dead("2", "emitter", now.Add(-10*time.Minute), origin),
		dead("3", "sink", now.Add(-10*time.Minute), ""),
	); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ZENKLAV_KAFKA_BROKERS": brokers[0], "ZENKLAV_LOG_LEVEL": "error"}
	replayOut := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, append([]string{"replay"}, args...), func(k string) string { return env[k] }, &out); err != nil {
			t.Fatalf("replay %q: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	arrived := func(want ...string) {
		t.Helper()
		got := readValues(t, ctx, brokers, origin)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s holds %q, want %q", origin, got, want)
		}
	}

	out := replayOut("--dry-run", "--connection", tenant)
	for _, want := range []string{
		"would replay " + schemas.TicketEventsDLQTopic + "/",
		"→ " + origin + " connection=" + tenant + " ticket=1 role=sink",
		"would skip " + schemas.TicketEventsDLQTopic + "/",
		`reason="klaviyo said 400"`,
		"dry run, nothing sent:",
		"matched 3, would replay 2, skipped 1 (no origin topic header)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	arrived()

	out = replayOut("--connection", tenant, "--since", "1h")
	if !strings.Contains(out, "matched 2, replayed 1, skipped 1 (no origin topic header)") {
		t.Errorf("replay --since 1h summary:\n%s", out)
	}
	arrived("ticket 2")

	// Replaying the same dead letter twice sends it twice: Klaviyo and ClickHouse drop the
	// copy, so that is the behaviour to keep, not a bug.
	for range 2 {
		out = replayOut("--connection", tenant, "--ticket", "1", "--role", "sink", "--until", now.Add(-time.Hour).Format(time.RFC3339))
		if !strings.Contains(out, "matched 1, replayed 1, skipped 0") {
			t.Errorf("replay --ticket 1 summary:\n%s", out)
		}
	}
	arrived("ticket 2", "ticket 1", "ticket 1")

	out = replayOut("--connection", tenant, "--role", "emitter", "--ticket", "1")
	if !strings.Contains(out, "matched 0, replayed 0, skipped 0") {
		t.Errorf("replay of nothing summary:\n%s", out)
	}
	arrived("ticket 2", "ticket 1", "ticket 1")
}

// readValues returns the values of every message in the one partition of topic.
func readValues(t *testing.T, ctx context.Context, brokers []string, topic string) []string {
	t.Helper()
	p, err := kafka.GroupProgress(ctx, brokers, topic, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.End == 0 {
		return nil
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	var out []string
	for int64(len(out)) < p.End {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		out = append(out, string(m.Value))
	}
	return out
}

// TestReplayReportPlainLines: when stdout is not a terminal, progress is plain lines.
func TestReplayReportPlainLines(t *testing.T) {
	var out bytes.Buffer
	r := newReplayReport(&out, false)
	r.every = 0
	r.progress(kafka.ReplayStats{Total: 10, Scanned: 4, Matched: 3, Replayed: 2})
	r.finish(kafka.ReplayStats{Total: 10, Scanned: 10, Matched: 6, Replayed: 5, Skipped: 1}, true)
	want := "replay: scanned 4/10, replayed 2\nscanned 10/10, matched 6, replayed 5, skipped 1 (no origin topic header)\n"
	if out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}
