package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics/analyticstest"
	"github.com/zenklav/zenklav/internal/apispec"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/sidebar"
)

// teamDirectory is a Zendesk account where ticket i's requester is user i (the lookups the
// sidebar does not make are left out).
type teamDirectory struct {
	zenklav.Directory
	users int64
}

func (d teamDirectory) FindTicket(_ context.Context, id int64) (zenklav.TicketDetails, error) {
	if id < 1 || id > d.users {
		return zenklav.TicketDetails{}, zenklav.Errorf(zenklav.ENOTFOUND, "no ticket %d", id)
	}
	return zenklav.TicketDetails{ID: id, RequesterID: id}, nil
}

func (d teamDirectory) FindUser(_ context.Context, id int64) (zenklav.Person, error) {
	return zenklav.Person{ID: id, Name: fmt.Sprint("Customer ", id), Email: fmt.Sprintf("customer%d@example.com", id)}, nil
}

// TestSidebarBusyTeamStaysUnderKlaviyoLimits: a team opening many tickets at once, each a
// customer never seen, asks Klaviyo only as fast as its per-account limits allow (the
// simulator enforces them): no request is answered 429, the cards that would have to wait
// come back at once with the sections Klaviyo could not give named, and the calls go through
// the same adapter and client `zenklav all` uses.
func TestSidebarBusyTeamStaysUnderKlaviyoLimits(t *testing.T) {
	const agents = 40
	sim, err := klaviyotest.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	var requests, throttled atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &apispec.StatusWriter{ResponseWriter: w}
		sim.ServeHTTP(sw, r)
		requests.Add(1)
		if sw.Status == http.StatusTooManyRequests {
			throttled.Add(1)
		}
	}))
	defer ts.Close()
	const key = "pk_busy_team"
	sim.AddAccount(key)
	for i := 1; i <= agents; i++ {
		sim.SetProfileDetails(key, fmt.Sprintf("customer%d@example.com", i), klaviyotest.ProfileDetails{
			FirstName: "Customer", Segments: []string{"VIP"}, Lists: []string{"Newsletter"},
		})
	}
	conns, err := zenklav.NewConnections(zenklav.Connection{ID: "team", Zendesk: zenklav.ZendeskSettings{
		Subdomain: "team", WebhookSecrets: []zenklav.Secret{"team-webhook-secret-0123"}, Brands: zenklav.Brands{All: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := klaviyo.NewClient(slog.New(slog.DiscardHandler), klaviyo.ClientConfig{BaseURL: ts.URL, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	cards, err := sidebar.New(slog.New(slog.DiscardHandler), sidebar.Config{
		Connections: conns, Store: analyticstest.NewMemory(),
		Accounts: zenklav.StaticRoutes(map[string]sidebar.Account{"team": {Zendesk: teamDirectory{users: agents}, Klaviyo: kc}}),
	})
	if err != nil {
		t.Fatal(err)
	}

	var (
		wg                sync.WaitGroup
		mu                sync.Mutex
		complete, partial int
	)
	for i := 1; i <= agents; i++ {
		wg.Go(func() {
			card, err := cards.Card(context.Background(), sidebar.Viewer{Connection: "team"}, sidebar.Query{TicketID: int64(i)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("ticket %d: %v", i, err)
			case len(card.Unavailable) == 0 && card.Klaviyo == sidebar.KlaviyoFound:
				complete++
			default:
				partial++
				for _, s := range card.Unavailable {
					if !slices.Contains([]string{sidebar.SectionProfile, sidebar.SectionActivity, sidebar.SectionSegments, sidebar.SectionLists}, s) {
						t.Errorf("ticket %d: section %s unavailable, though only Klaviyo was limited", i, s)
					}
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d cards: %d complete, %d partial; %d Klaviyo requests", agents, complete, partial, requests.Load())
	if n := throttled.Load(); n != 0 {
		t.Errorf("Klaviyo answered %d of %d requests 429: the team tripped the account's limit", n, requests.Load())
	}
	if complete == 0 {
		t.Error("no card was complete: the limiter let nothing through")
	}
	if partial == 0 {
		t.Errorf("all %d cold cards complete at once: more than Klaviyo's segments limit (3/s, 60/min) allows", agents)
	}
	sim.AssertNoViolations(t)
}
