package zenklav_test

import (
	"strings"
	"testing"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

func TestTransitions(t *testing.T) {
	tests := []struct {
		typ, status string
		want        []string
	}{
		{schemas.TicketCreated, "new", []string{zenklav.MetricOpened}},
		{schemas.TicketCreated, "open", []string{zenklav.MetricOpened}},
		{schemas.TicketCreated, "closed", []string{zenklav.MetricOpened, zenklav.MetricResolved}},
		{schemas.TicketStatusChanged, "closed", []string{zenklav.MetricResolved}},
		{schemas.TicketStatusChanged, "solved", nil},
		{schemas.TicketStatusChanged, "pending", nil},
		{schemas.TicketCommentAdded, "closed", nil},
		{schemas.TicketFieldsChanged, "open", nil},
		{"backfill " + schemas.TicketCreated, "new", nil},
		{"backfill " + schemas.TicketStatusChanged, "closed", nil},
		{"backfill to-klaviyo " + schemas.TicketCreated, "new", []string{zenklav.MetricOpened}},
		{"backfill to-klaviyo " + schemas.TicketStatusChanged, "closed", []string{zenklav.MetricResolved}},
		{"backfill to-klaviyo " + schemas.TicketStatusChanged, "solved", nil},
	}
	for _, tt := range tests {
		e := schemas.TicketEvent{Type: tt.typ, Ticket: schemas.Ticket{Status: tt.status}}
		// Backfilled events: without --to-klaviyo nothing, with it the live rules.
		if rest, ok := strings.CutPrefix(tt.typ, "backfill "); ok {
			e.Source = schemas.SourceBackfill
			e.Type, e.Klaviyo = strings.CutPrefix(rest, "to-klaviyo ")
		}
		var got []string
		for _, tr := range zenklav.Transitions(&e) {
			got = append(got, tr.Metric)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s with status %s: metrics %v, want %v", tt.typ, tt.status, got, tt.want)
		}
	}
}

func TestUniqueIDIgnoresTheZendeskEvent(t *testing.T) {
	a := schemas.TicketEvent{EventID: "zd:1", Connection: "acme", Ticket: schemas.Ticket{ID: 7}}
	b := a
	b.EventID = "zt:2" // the same change, delivered by a trigger as well
	if zenklav.UniqueID(&a, zenklav.Opened) != zenklav.UniqueID(&b, zenklav.Opened) {
		t.Error("one change delivered twice got two unique ids")
	}
	if zenklav.UniqueID(&a, zenklav.Opened) == zenklav.UniqueID(&a, zenklav.Resolved) {
		t.Error("opened and resolved share a unique id")
	}
	c := a
	c.Connection = "globex"
	if zenklav.UniqueID(&a, zenklav.Opened) == zenklav.UniqueID(&c, zenklav.Opened) {
		t.Error("two connections share a unique id")
	}
}
