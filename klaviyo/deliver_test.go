package klaviyo_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

// TestDeliverIsolatesRefusedEvents: one event Klaviyo refuses, and one it would refuse,
// cost only themselves; the others of the request are delivered.
func TestDeliverIsolatesRefusedEvents(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount("pk_deliver")
	c := newClient(t, sim, "pk_deliver")
	events := make([]klaviyo.Event, 30)
	for i := range events {
		events[i] = klaviyo.Event{Metric: "Opened Ticket", Profile: klaviyo.Profile{Email: fmt.Sprintf("c%d@example.com", i)},
			UniqueID: fmt.Sprintf("u%d", i), Properties: map[string]any{"Ticket_id": i}}
	}
	events[4].Profile = klaviyo.Profile{PhoneNumber: "555-0142"} // not E.164: refused before sending
	sim.RefuseEvents(func(e klaviyo.Event) bool { return e.UniqueID == "u17" })
	errs := c.Deliver(context.Background(), events)
	for i, err := range errs {
		switch i {
		case 4, 17:
			if zenklav.ErrorCode(err) != zenklav.EINVALID {
				t.Errorf("event %d: %v, want a permanent EINVALID", i, err)
			}
		default:
			if err != nil {
				t.Errorf("event %d: %v", i, err)
			}
		}
	}
	if got := len(sim.Events("pk_deliver")); got != 28 {
		t.Errorf("Klaviyo holds %d events, want 28", got)
	}
	sim.AssertNoViolations(t)
}

// TestDeliverLoneEvent: one event alone is delivered too (through Create Event).
func TestDeliverLoneEvent(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount("pk_lone")
	c := newClient(t, sim, "pk_lone")
	errs := c.Deliver(context.Background(), []klaviyo.Event{{Metric: "Opened Ticket", Profile: klaviyo.Profile{Email: "a@example.com"}, UniqueID: "u"}})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	if got := sim.Events("pk_lone"); len(got) != 1 {
		t.Fatalf("Klaviyo holds %d events, want 1", len(got))
	}
}

// TestDeliverSplitsLargeBodies: events that would make a body over Klaviyo's 5 MB go in
// several requests, all delivered.
func TestDeliverSplitsLargeBodies(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount("pk_large")
	c := newClient(t, sim, "pk_large")
	big := strings.Repeat("x", 90_000) // under the 100 KB a string may have; 100 of them are 9 MB
	events := make([]klaviyo.Event, 100)
	for i := range events {
		events[i] = klaviyo.Event{Metric: "Opened Ticket", Profile: klaviyo.Profile{Email: fmt.Sprintf("c%d@example.com", i)},
			UniqueID: fmt.Sprintf("u%d", i), Properties: map[string]any{"Description": big}}
	}
	for i, err := range c.Deliver(context.Background(), events) {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if got := len(sim.Events("pk_large")); got != 100 {
		t.Errorf("Klaviyo holds %d events, want 100", got)
	}
}
