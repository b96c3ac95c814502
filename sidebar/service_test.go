package sidebar_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/sidebar"
)

// fakeZendesk is a Zendesk account with tickets and users, counting its reads (the lookups
// the sidebar does not make are left out).
type fakeZendesk struct {
	zenklav.Directory
	mu      sync.Mutex
	tickets map[int64]zenklav.TicketDetails
	users   map[int64]zenklav.Person
	reads   atomic.Int32
}

func (z *fakeZendesk) FindTicket(_ context.Context, id int64) (zenklav.TicketDetails, error) {
	z.reads.Add(1)
	z.mu.Lock()
	defer z.mu.Unlock()
	t, ok := z.tickets[id]
	if !ok {
		return t, zenklav.Errorf(zenklav.ENOTFOUND, "no ticket %d", id)
	}
	return t, nil
}

func (z *fakeZendesk) FindUser(_ context.Context, id int64) (zenklav.Person, error) {
	z.reads.Add(1)
	z.mu.Lock()
	defer z.mu.Unlock()
	u, ok := z.users[id]
	if id == revoked {
		return u, zenklav.Errorf(zenklav.EUNAUTHORIZED, "Zendesk refused the API token")
	}
	if !ok {
		return u, zenklav.Errorf(zenklav.ENOTFOUND, "no user %d", id)
	}
	return u, nil
}

// fakeKlaviyo is a Klaviyo account with profiles by email or phone. fail makes a call fail;
// gate, when set, holds every call until it is closed or the call's ctx ends.
type fakeKlaviyo struct {
	zenklav.Klaviyo
	profiles map[string]zenklav.Profile
	fail     map[string]error // by call: find, events, segments, lists
	gate     chan struct{}
	entered  chan struct{} // when set, told of every call
	calls    sync.Map      // call name → *atomic.Int32
}

func (k *fakeKlaviyo) enter(ctx context.Context, call string) error {
	n, _ := k.calls.LoadOrStore(call, new(atomic.Int32))
	n.(*atomic.Int32).Add(1)
	if k.entered != nil {
		k.entered <- struct{}{}
	}
	if k.gate != nil {
		select {
		case <-k.gate:
		case <-ctx.Done():
			return zenklav.Wrap(zenklav.EUNAVAILABLE, ctx.Err(), "%s", call)
		}
	}
	return k.fail[call]
}

func (k *fakeKlaviyo) count(call string) int {
	n, ok := k.calls.Load(call)
	if !ok {
		return 0
	}
	return int(n.(*atomic.Int32).Load())
}

func (k *fakeKlaviyo) FindProfile(ctx context.Context, key zenklav.ProfileKey) (zenklav.Profile, bool, error) {
	if err := k.enter(ctx, "find"); err != nil {
		return zenklav.Profile{}, false, err
	}
	p, ok := k.profiles[key.Email+key.PhoneNumber]
	return p, ok, nil
}

func (k *fakeKlaviyo) RecentEvents(ctx context.Context, id string, n int) ([]zenklav.RecordedEvent, error) {
	if err := k.enter(ctx, "events"); err != nil {
		return nil, err
	}
	v := 59.9
	return []zenklav.RecordedEvent{{Metric: "Placed Order", Time: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), Value: &v}}, nil
}

func (k *fakeKlaviyo) ProfileSegments(ctx context.Context, id string) ([]zenklav.Membership, error) {
	if err := k.enter(ctx, "segments"); err != nil {
		return nil, err
	}
	return []zenklav.Membership{{ID: "S1", Name: "VIP"}}, nil
}

func (k *fakeKlaviyo) ProfileLists(ctx context.Context, id string) ([]zenklav.Membership, error) {
	if err := k.enter(ctx, "lists"); err != nil {
		return nil, err
	}
	return []zenklav.Membership{{ID: "L1", Name: "Newsletter"}}, nil
}

// fakeStore is the ticket store as the sidebar reads and writes it (the rest is left out):
// it answers a support history, or err, and passes on every memberships snapshot recorded.
type fakeStore struct {
	zenklav.TicketStore
	err     error
	tenants []string
	mu      sync.Mutex
	seen    chan string
}

func (h *fakeStore) SupportHistory(_ context.Context, tenant string, requester int64, since time.Time) (zenklav.SupportHistory, error) {
	h.mu.Lock()
	h.tenants = append(h.tenants, tenant)
	h.mu.Unlock()
	if h.err != nil {
		return zenklav.SupportHistory{}, h.err
	}
	return zenklav.SupportHistory{Open: 1, Recent: 2, Total: 3, LastResolved: zenklav.ResolvedTicket{TicketID: 7, Subject: "Refund", At: since}}, nil
}

func (h *fakeStore) RecordMemberships(_ context.Context, tenant string, requester int64, _ time.Time, kind string, names []string) error {
	h.seen <- fmt.Sprintf("%s/%d/%s:%v", tenant, requester, kind, names)
	return nil
}

type fixture struct {
	zendesk *fakeZendesk
	klaviyo *fakeKlaviyo
	history *fakeStore
	clock   *atomic.Int64 // unix nanoseconds
	svc     *sidebar.Service
	reg     *prometheus.Registry
	seen    chan string
}

const (
	ana   = int64(360000000001) // has a Klaviyo profile
	liam  = int64(360000000002) // has none
	nomad = int64(360000000003) // no email, a local phone number: no Klaviyo identity
	// revoked is a user Zendesk answers 401 for, as for a revoked API token.
	revoked = int64(360000000004)
	maya    = int64(360000000005) // an agent
)

func newFixture(t *testing.T, mutate func(*sidebar.Config)) *fixture {
	t.Helper()
	conns, err := zenklav.NewConnections(
		zenklav.Connection{ID: "acme", Zendesk: zenklav.ZendeskSettings{Subdomain: "acme", WebhookSecrets: []zenklav.Secret{"test-webhook-secret-0123"}, Brands: zenklav.Brands{IDs: []int64{1}}}},
		zenklav.Connection{ID: "acme-outlet", Zendesk: zenklav.ZendeskSettings{Subdomain: "acme", WebhookSecrets: []zenklav.Secret{"test-webhook-secret-0123"}, Brands: zenklav.Brands{IDs: []int64{2}}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		zendesk: &fakeZendesk{
			tickets: map[int64]zenklav.TicketDetails{
				10: {ID: 10, RequesterID: ana, BrandID: 1},
				11: {ID: 11, RequesterID: liam, BrandID: 1},
				12: {ID: 12, RequesterID: nomad, BrandID: 1},
				20: {ID: 20, RequesterID: ana, BrandID: 2},
			},
			users: map[int64]zenklav.Person{
				ana:   {ID: ana, Name: "Ana Souza", Email: "ana@example.com", Role: "end-user"},
				liam:  {ID: liam, Name: "Liam Walsh", Email: "liam@example.com", Role: "end-user"},
				nomad: {ID: nomad, Name: "Nomad", Phone: "555 0142", Role: "end-user"},
				maya:  {ID: maya, Name: "Maya Chen", Email: "maya@acme.example", Role: "agent"},
			},
		},
		klaviyo: &fakeKlaviyo{profiles: map[string]zenklav.Profile{"ana@example.com": {ID: "01KANA", FirstName: "Ana", LastName: "Souza"}}},
		clock:   new(atomic.Int64),
		reg:     prometheus.NewRegistry(),
		seen:    make(chan string, 10),
	}
	f.history = &fakeStore{seen: f.seen}
	f.clock.Store(time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC).UnixNano())
	cfg := sidebar.Config{
		Connections: conns,
		Accounts:    zenklav.StaticRoutes(map[string]sidebar.Account{"acme": {Zendesk: f.zendesk, Klaviyo: f.klaviyo}}),
		Store:       f.history,
		Now:         func() time.Time { return time.Unix(0, f.clock.Load()) },
		Registry:    f.reg,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if f.svc, err = sidebar.New(slog.New(slog.DiscardHandler), cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) advance(d time.Duration) { f.clock.Add(int64(d)) }

var acme = sidebar.Viewer{Connection: "acme"}

func TestCard(t *testing.T) {
	f := newFixture(t, nil)
	card, err := f.svc.Card(context.Background(), acme, sidebar.Query{TicketID: 10})
	if err != nil {
		t.Fatal(err)
	}
	if card.Klaviyo != sidebar.KlaviyoFound || card.Profile == nil || card.Profile.ID != "01KANA" {
		t.Fatalf("card = %+v, want Ana's profile found", card)
	}
	if card.Profile.URL != "https://www.klaviyo.com/profile/01KANA" {
		t.Errorf("profile url = %q", card.Profile.URL)
	}
	if card.Requester.ID != ana || card.TicketID != 10 {
		t.Errorf("requester %d, ticket %d; want Ana and ticket 10", card.Requester.ID, card.TicketID)
	}
	if len(card.Activity) != 1 || len(card.Segments) != 1 || len(card.Lists) != 1 || card.Support == nil {
		t.Errorf("sections missing: %+v", card)
	}
	if card.Support.RecentDays != sidebar.RecentDays || len(card.Unavailable) != 0 {
		t.Errorf("support %+v, unavailable %v", card.Support, card.Unavailable)
	}
	if got := f.history.tenants; !slices.Equal(got, []string{"acme"}) {
		t.Errorf("history read for tenants %v, want [acme]", got)
	}
	// The segments and lists it read are kept for the segments report.
	got := []string{<-f.seen, <-f.seen}
	slices.Sort(got)
	if want := []string{"acme/360000000001/list:[Newsletter]", "acme/360000000001/segment:[VIP]"}; !slices.Equal(got, want) {
		t.Errorf("snapshots %v, want %v", got, want)
	}
}

// TestCardSnapshotsOnlyWhatWasRead: a section Klaviyo did not give is no snapshot (not a
// false "in none").
func TestCardSnapshotsOnlyWhatWasRead(t *testing.T) {
	f := newFixture(t, nil)
	f.klaviyo.fail = map[string]error{"segments": errors.New("503")}
	if _, err := f.svc.Card(context.Background(), acme, sidebar.Query{TicketID: 10}); err != nil {
		t.Fatal(err)
	}
	// Segments are written before lists: the lists coming first means no segments came.
	if got := <-f.seen; got != "acme/360000000001/list:[Newsletter]" {
		t.Errorf("snapshot %s, want the lists only", got)
	}
}

func TestCardStates(t *testing.T) {
	tests := []struct {
		name            string
		query           sidebar.Query
		failing         map[string]error
		historyErr      error
		wantKlaviyo     string
		wantUnavailable []string
		wantCalls       int // Klaviyo calls made
	}{
		{name: "no profile", query: sidebar.Query{TicketID: 11}, wantKlaviyo: sidebar.KlaviyoNotFound, wantUnavailable: []string{}, wantCalls: 1},
		{name: "no identity Klaviyo could hold", query: sidebar.Query{TicketID: 12}, wantKlaviyo: sidebar.KlaviyoNotFound, wantUnavailable: []string{}, wantCalls: 0},
		{name: "new ticket by requester", query: sidebar.Query{RequesterID: ana}, wantKlaviyo: sidebar.KlaviyoFound, wantUnavailable: []string{}, wantCalls: 4},
		{
			name: "Klaviyo search failing", query: sidebar.Query{TicketID: 10},
			failing:     map[string]error{"find": zenklav.Errorf(zenklav.EUNAVAILABLE, "503")},
			wantKlaviyo: sidebar.KlaviyoUnavailable, wantUnavailable: []string{"profile"}, wantCalls: 1,
		},
		{
			name: "segments and lists failing, ClickHouse down", query: sidebar.Query{TicketID: 10},
			failing:     map[string]error{"segments": errors.New("429"), "lists": errors.New("timeout")},
			historyErr:  errors.New("clickhouse down"),
			wantKlaviyo: sidebar.KlaviyoFound, wantUnavailable: []string{"segments", "lists", "support"}, wantCalls: 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.klaviyo.fail, f.history.err = tt.failing, tt.historyErr
			card, err := f.svc.Card(context.Background(), acme, tt.query)
			if err != nil {
				t.Fatal(err)
			}
			if card.Klaviyo != tt.wantKlaviyo || !slices.Equal(card.Unavailable, tt.wantUnavailable) {
				t.Errorf("klaviyo %q, unavailable %v; want %q, %v", card.Klaviyo, card.Unavailable, tt.wantKlaviyo, tt.wantUnavailable)
			}
			if (card.Profile != nil) != (tt.wantKlaviyo == sidebar.KlaviyoFound) {
				t.Errorf("profile %+v with klaviyo %q", card.Profile, card.Klaviyo)
			}
			if (card.Support == nil) != (tt.historyErr != nil) {
				t.Errorf("support %+v with history error %v", card.Support, tt.historyErr)
			}
			calls := f.klaviyo.count("find") + f.klaviyo.count("events") + f.klaviyo.count("segments") + f.klaviyo.count("lists")
			if calls != tt.wantCalls {
				t.Errorf("%d Klaviyo calls, want %d", calls, tt.wantCalls)
			}
		})
	}
}

func TestCardRefusals(t *testing.T) {
	tests := []struct {
		name   string
		viewer sidebar.Viewer
		query  sidebar.Query
		want   string
	}{
		{"no ticket or requester", acme, sidebar.Query{}, zenklav.EINVALID},
		{"negative id", acme, sidebar.Query{TicketID: -1}, zenklav.EINVALID},
		{"unknown tenant", sidebar.Viewer{Connection: "globex"}, sidebar.Query{TicketID: 10}, zenklav.EFORBIDDEN},
		{"another ticket than the session's", sidebar.Viewer{Connection: "acme", TicketID: 11}, sidebar.Query{TicketID: 10}, zenklav.EFORBIDDEN},
		{"ticket of another connection's brand", acme, sidebar.Query{TicketID: 20}, zenklav.EFORBIDDEN},
		{"unknown ticket", acme, sidebar.Query{TicketID: 99}, zenklav.ENOTFOUND},
		{"unknown requester", acme, sidebar.Query{RequesterID: 42}, zenklav.ENOTFOUND},
		{"Zendesk refusing zenklav's token", acme, sidebar.Query{RequesterID: revoked}, zenklav.EUNAVAILABLE},
		{"an agent's card on a new ticket", acme, sidebar.Query{RequesterID: maya}, zenklav.EFORBIDDEN},
		{"new ticket of another connection's brand", acme, sidebar.Query{RequesterID: ana, BrandID: 2}, zenklav.EFORBIDDEN},
		{"session of a ticket asking by requester", sidebar.Viewer{Connection: "acme", TicketID: 11}, sidebar.Query{RequesterID: ana}, zenklav.EFORBIDDEN},
		{"connection without Zendesk credentials", sidebar.Viewer{Connection: "acme-outlet"}, sidebar.Query{TicketID: 20}, zenklav.EUNAVAILABLE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			card, err := f.svc.Card(context.Background(), tt.viewer, tt.query)
			if zenklav.ErrorCode(err) != tt.want {
				t.Fatalf("err = %v (%s), want %s; card %+v", err, zenklav.ErrorCode(err), tt.want, card)
			}
			if f.klaviyo.count("find") != 0 {
				t.Errorf("a refused card asked Klaviyo")
			}
		})
	}
}

func TestCardSessionTicket(t *testing.T) {
	f := newFixture(t, nil)
	card, err := f.svc.Card(context.Background(), sidebar.Viewer{Connection: "acme", TicketID: 11}, sidebar.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if card.TicketID != 11 || card.Requester.ID != liam {
		t.Errorf("card of ticket %d, requester %d; want the session's ticket 11 and Liam", card.TicketID, card.Requester.ID)
	}
}

// TestCardSessionBinding: a session whose Zendesk token named no ticket is held to the first
// ticket it reads; before that it may read new-ticket cards by requester.
func TestCardSessionBinding(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	s1 := sidebar.Viewer{Connection: "acme", Session: "s1"}
	if _, err := f.svc.Card(ctx, s1, sidebar.Query{RequesterID: liam, BrandID: 1}); err != nil {
		t.Fatalf("new ticket's requester before any ticket: %v", err)
	}
	if _, err := f.svc.Card(ctx, s1, sidebar.Query{TicketID: 99}); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Fatalf("unknown ticket: %v", err)
	}
	if _, err := f.svc.Card(ctx, s1, sidebar.Query{TicketID: 10}); err != nil {
		t.Fatalf("first ticket: %v", err)
	}
	for _, q := range []sidebar.Query{{TicketID: 11}, {RequesterID: liam}, {TicketID: 12, RequesterID: nomad}} {
		if _, err := f.svc.Card(ctx, s1, q); zenklav.ErrorCode(err) != zenklav.EFORBIDDEN {
			t.Errorf("%+v after ticket 10: %v, want forbidden", q, err)
		}
	}
	card, err := f.svc.Card(ctx, s1, sidebar.Query{})
	if err != nil || card.TicketID != 10 {
		t.Errorf("the bound ticket again, unnamed: ticket %d, %v", card.TicketID, err)
	}
	if _, err := f.svc.Card(ctx, sidebar.Viewer{Connection: "acme", Session: "s2"}, sidebar.Query{TicketID: 11}); err != nil {
		t.Errorf("another session, another ticket: %v", err)
	}

	// Two first requests of one session for different tickets at once: one ticket wins.
	var wg sync.WaitGroup
	var ok atomic.Int32
	s3 := sidebar.Viewer{Connection: "acme", Session: "s3"}
	for _, id := range []int64{10, 11, 12, 10, 11, 12} {
		wg.Go(func() {
			if _, err := f.svc.Card(ctx, s3, sidebar.Query{TicketID: id}); err == nil {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if n := ok.Load(); n < 1 || n > 2 {
		t.Errorf("%d of 6 racing first requests succeeded, want those of one ticket only (1 or 2)", n)
	}
}

func TestCardCache(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	get := func() sidebar.Card {
		t.Helper()
		c, err := f.svc.Card(ctx, acme, sidebar.Query{TicketID: 10})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	get()
	zendeskReads := f.zendesk.reads.Load()
	f.advance(59 * time.Second)
	get()
	if n := f.klaviyo.count("find"); n != 1 {
		t.Errorf("Klaviyo searched %d times within a minute, want 1", n)
	}
	if n := f.zendesk.reads.Load(); n != zendeskReads {
		t.Errorf("a warm card read Zendesk %d more times", n-zendeskReads)
	}
	f.advance(2 * time.Second)
	get()
	if n := f.klaviyo.count("find"); n != 2 {
		t.Errorf("Klaviyo searched %d times after the minute, want 2", n)
	}

	// A partial card is kept for seconds only.
	f.klaviyo.fail = map[string]error{"segments": errors.New("503")}
	f.advance(61 * time.Second)
	if c := get(); !slices.Equal(c.Unavailable, []string{"segments"}) {
		t.Fatalf("unavailable %v, want [segments]", c.Unavailable)
	}
	f.klaviyo.fail = nil
	f.advance(6 * time.Second)
	if c := get(); len(c.Unavailable) != 0 {
		t.Errorf("card still partial 6 s after Klaviyo recovered: %v", c.Unavailable)
	}

	// Five cards: the first, one after each expiry and the partial one built, one cached.
	want := `
# HELP zenklav_sidebar_cards_total Sidebar profile cards served, by where from: cache or built.
# TYPE zenklav_sidebar_cards_total counter
zenklav_sidebar_cards_total{from="built"} 4
zenklav_sidebar_cards_total{from="cache"} 1
# HELP zenklav_sidebar_sections_unavailable_total Sections left out of built sidebar cards because Klaviyo or ClickHouse failed or was too slow, by section.
# TYPE zenklav_sidebar_sections_unavailable_total counter
zenklav_sidebar_sections_unavailable_total{section="segments"} 1
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestCardRequesterChanged(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.svc.Card(ctx, acme, sidebar.Query{TicketID: 10}); err != nil {
		t.Fatal(err)
	}
	f.zendesk.mu.Lock()
	f.zendesk.tickets[10] = zenklav.TicketDetails{ID: 10, RequesterID: liam, BrandID: 1}
	f.zendesk.mu.Unlock()
	// The page saw the new requester: the cached ticket is read again.
	card, err := f.svc.Card(ctx, acme, sidebar.Query{TicketID: 10, RequesterID: liam})
	if err != nil {
		t.Fatal(err)
	}
	if card.Requester.ID != liam {
		t.Errorf("requester %d, want Liam after the change", card.Requester.ID)
	}
}

func TestCardSingleFlight(t *testing.T) {
	f := newFixture(t, nil)
	f.klaviyo.gate, f.klaviyo.entered = make(chan struct{}), make(chan struct{}, 100)
	const agents = 20
	var wg sync.WaitGroup
	errs := make(chan error, agents)
	for range agents {
		wg.Go(func() {
			card, err := f.svc.Card(context.Background(), acme, sidebar.Query{TicketID: 10})
			if err == nil && card.Klaviyo != sidebar.KlaviyoFound {
				err = errors.New("card not found: " + card.Klaviyo)
			}
			errs <- err
		})
	}
	// Every agent waits on the one search in flight; let it through once it is there.
	<-f.klaviyo.entered
	close(f.klaviyo.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := f.klaviyo.count("find"); n != 1 {
		t.Errorf("%d agents made %d Klaviyo searches, want 1", agents, n)
	}
}

func TestCardSlowKlaviyo(t *testing.T) {
	f := newFixture(t, func(c *sidebar.Config) {
		c.ProfileTimeout, c.SectionTimeout = 50*time.Millisecond, 50*time.Millisecond
	})
	f.klaviyo.gate = make(chan struct{}) // never opens: every Klaviyo call times out
	card, err := f.svc.Card(context.Background(), acme, sidebar.Query{TicketID: 10})
	if err != nil {
		t.Fatal(err)
	}
	if card.Klaviyo != sidebar.KlaviyoUnavailable || !slices.Equal(card.Unavailable, []string{"profile"}) || card.Support == nil {
		t.Errorf("klaviyo %q, unavailable %v, support %+v; want the profile unavailable and the support history", card.Klaviyo, card.Unavailable, card.Support)
	}
}

func TestConsentState(t *testing.T) {
	for in, want := range map[string]string{
		"SUBSCRIBED": sidebar.ConsentSubscribed, "UNSUBSCRIBED": sidebar.ConsentUnsubscribed,
		"NEVER_SUBSCRIBED": sidebar.ConsentNever, "": sidebar.ConsentNever, "subscribed": sidebar.ConsentSubscribed,
	} {
		if got := sidebar.ConsentState(in); got != want {
			t.Errorf("ConsentState(%q) = %q, want %q", in, got, want)
		}
	}
}
