package ingest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/ingest"
	"github.com/zenklav/zenklav/schemas"
)

// TestTestEvent: a test event goes the webhooks' way (signature, brand rule, contract, Kafka)
// and is marked as a test wherever it lands; each is a new one, of a brand of its connection;
// an unknown connection is refused before anything is written.
func TestTestEvent(t *testing.T) {
	const secret = "acme-signing-secret-0001"
	now := time.Date(2025, 1, 8, 10, 12, 9, 0, time.UTC)
	conns, err := zenklav.NewConnections(
		zenklav.Connection{ID: "acme", Zendesk: zenklav.ZendeskSettings{Subdomain: "acme", WebhookSecrets: []zenklav.Secret{secret},
			Brands: zenklav.Brands{IDs: []int64{7}}}},
		zenklav.Connection{ID: "acme-eu", Zendesk: zenklav.ZendeskSettings{Subdomain: "acme", WebhookSecrets: []zenklav.Secret{secret},
			Brands: zenklav.Brands{IDs: []int64{8, 9}}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	clock := now
	svc := ingest.New(ingest.Config{Connections: conns, Publisher: rec, Now: func() time.Time { return clock }})
	ctx := context.Background()

	ev, err := svc.TestEvent(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Connection != "acme" || ev.Type != schemas.TicketCreated || ev.Ticket.Subject != ingest.TestSubject ||
		!slices.Equal(ev.Ticket.Tags, []string{ingest.TestTag}) || ev.Ticket.ID < ingest.TestTicketBase ||
		ev.Ticket.Requester.Email != ingest.TestEmail || ev.BrandID != 7 || !ev.ReceivedAt.Equal(now) {
		t.Errorf("test event %+v", ev)
	}
	if len(rec.msgs) != 1 || rec.msgs[0].Headers[ingest.HeaderEventID] != ev.EventID {
		t.Fatalf("published %d messages, want the test event", len(rec.msgs))
	}
	clock = now.Add(time.Millisecond)
	again, err := svc.TestEvent(ctx, "acme")
	if err != nil || again.EventID == ev.EventID || again.Ticket.ID == ev.Ticket.ID {
		t.Errorf("a second test: %v, event %s ticket %d; want a new event of a new ticket", err, again.EventID, again.Ticket.ID)
	}

	rec.msgs = nil
	if ev, err := svc.TestEvent(ctx, "acme-eu"); err != nil || ev.Connection != "acme-eu" || ev.BrandID != 8 {
		t.Errorf("acme-eu's test: %v, %+v; want one of its brand 8", err, ev)
	}
	rec.msgs = nil
	if _, err := svc.TestEvent(ctx, "initech"); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("initech: %v, want ENOTFOUND", err)
	}
	if len(rec.msgs) != 0 {
		t.Errorf("%d messages published for refused tests", len(rec.msgs))
	}
}
