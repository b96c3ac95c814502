package ingest

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
)

// What marks a test ticket event (TestEvent), so that it is known wherever it lands: in
// Kafka, in ClickHouse (the reports count it, filter it out with its tag) and in Klaviyo.
const (
	TestSubject = "zenklav test event"
	TestTag     = "zenklav_test"
	// TestEmail is the requester of test tickets: the Klaviyo profile their metrics land on.
	TestEmail = "zenklav-test@example.com"
	// TestTicketBase is where test tickets' ids begin: far beyond the ids Zendesk gives (it
	// counts up from 1 per account), yet a number JavaScript and Klaviyo keep exactly.
	TestTicketBase = 9_000_000_000_000_000
)

// TestEvent sends a test ticket event of the connection through the way every Zendesk
// webhook goes: a "ticket created" body in zenklav's trigger template, signed with the
// connection's webhook secret as Zendesk signs, verified, parsed under the brand rule,
// validated and published by Zendesk (so to the emitter, and to Klaviyo as an Opened Ticket
// on TestEmail's profile). It returns the event once Kafka has it. The ticket has subject
// TestSubject, tag TestTag and an id from TestTicketBase; every call makes a new one.
// ENOTFOUND for an unknown connection.
func (s *Service) TestEvent(ctx context.Context, connection string) (*schemas.TicketEvent, error) {
	c := s.cfg.Connections.ByID(connection)
	if c == nil {
		return nil, zenklav.Errorf(zenklav.ENOTFOUND, "no connection %q", connection)
	}
	secrets := c.WebhookSecrets()
	if len(secrets) == 0 {
		return nil, zenklav.Errorf(zenklav.EINVALID, "connection %q has no Zendesk webhook secret", connection)
	}
	var brand int64 // all brands: a ticket of none in particular
	if b := c.Zendesk.Brands; !b.All && len(b.IDs) > 0 {
		brand = b.IDs[0]
	}
	sub := c.Zendesk.Subdomain
	if owner := s.cfg.Connections.Owner(sub, brand); owner == nil || owner.ID != connection {
		// The connections' rules make this impossible; were it not, the test would land in
		// another connection.
		return nil, zenklav.Errorf(zenklav.ECONFLICT, "a test ticket of brand %d would belong to another connection of %s", brand, sub)
	}
	now := s.cfg.Now()
	body, err := testBody(now, brand)
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EINTERNAL, err, "build the test event")
	}
	ts := zendesk.Timestamp(now)
	h := http.Header{}
	h.Set(zendesk.HeaderSignatureTimestamp, ts)
	h.Set(zendesk.HeaderSignature, zendesk.Sign(secrets[0], ts, body))
	ev, err := s.Zendesk(ctx, sub, h, body)
	if err == nil && ev == nil {
		err = zenklav.Errorf(zenklav.EINTERNAL, "the test event was not taken")
	}
	return ev, err
}

// testBody is a test ticket's "created" notification in zenklav's trigger template
// (docs/zendesk-webhooks.md): every value a string, as Zendesk's placeholders render.
func testBody(now time.Time, brand int64) ([]byte, error) {
	id := TestTicketBase + now.UnixMicro()%1_000_000_000_000
	ids := func(n int64) string {
		if n == 0 {
			return ""
		}
		return strconv.FormatInt(n, 10)
	}
	return json.Marshal(map[string]any{
		"zenklav": "ticket_event.v1", "event": "created",
		// Nanoseconds make each body, and so its event id, a new one.
		"occurred_at": now.UTC().Format(time.RFC3339Nano),
		"brand_id":    ids(brand),
		"ticket": map[string]any{
			"id": ids(id), "subject": TestSubject, "status": "new", "previous_status": "", "priority": "", "type": "",
			"description": "A test ticket event sent from zenklav's health page: it checks that a Zendesk ticket reaches Klaviyo.",
			"tags":        TestTag, "via": "api",
			"requester":   map[string]string{"id": "", "email": TestEmail, "phone": "", "name": "zenklav test"},
			"assignee_id": "", "group_id": "", "custom_fields": map[string]string{},
		},
	})
}
