package setup_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstore"
	"github.com/zenklav/zenklav/setup"
)

// The fakes below stand for the connections store, the accounts' admin APIs and the OAuth
// providers; cmd/zenklav's setup test runs the same steps against the simulators and Kafka.

// store is an in-memory setup.Store that checks what it is given as connstore does.
type store struct {
	mu      sync.Mutex
	entries map[string]connstore.Entry
	puts    int
}

func newStore() *store { return &store{entries: map[string]connstore.Entry{}} }

func (s *store) Get(id string) (connstore.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[id]
	if !ok {
		return connstore.Entry{}, zenklav.Errorf(zenklav.ENOTFOUND, "no connection %q", id)
	}
	e.Connection = clone(e.Connection)
	return e, nil
}

func (s *store) List(context.Context) ([]connstore.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []connstore.Entry
	for _, e := range s.entries {
		e.Connection = clone(e.Connection)
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b connstore.Entry) int { return strings.Compare(a.Connection.ID, b.Connection.ID) })
	return out, nil
}

func (s *store) Put(_ context.Context, c zenklav.Connection, disabled bool) error {
	if err := c.Validate(); err != nil {
		return zenklav.Wrap(zenklav.EINVALID, err, "connection %q", c.ID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[c.ID] = connstore.Entry{Connection: clone(c), Disabled: disabled}
	s.puts++
	return nil
}

func (s *store) Remove(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[id]; !ok {
		return zenklav.Errorf(zenklav.ENOTFOUND, "no connection %q", id)
	}
	delete(s.entries, id)
	return nil
}

// clone copies c deeply, as a round trip through the store would.
func clone(c zenklav.Connection) zenklav.Connection {
	c.Zendesk.WebhookSecrets = slices.Clone(c.Zendesk.WebhookSecrets)
	c.Klaviyo.WebhookSecrets = slices.Clone(c.Klaviyo.WebhookSecrets)
	c.Zendesk.Brands.IDs = slices.Clone(c.Zendesk.Brands.IDs)
	if t := c.Zendesk.OAuth; t != nil {
		c.Zendesk.OAuth = new(*t)
	}
	if t := c.Klaviyo.OAuth; t != nil {
		c.Klaviyo.OAuth = new(*t)
	}
	return c
}

// zendeskAccount is a fake zenklav.ZendeskAdmin: its objects by id, and the writes it took.
type zendeskAccount struct {
	mu          sync.Mutex
	webhooks    map[string]zenklav.ZendeskWebhook
	automations map[int64]zenklav.ZendeskAutomation
	views       map[int64]zenklav.ZendeskView
	writes      []string
	last        int64
}

func newZendesk() *zendeskAccount {
	return &zendeskAccount{webhooks: map[string]zenklav.ZendeskWebhook{}, automations: map[int64]zenklav.ZendeskAutomation{}, views: map[int64]zenklav.ZendeskView{}}
}

func (z *zendeskAccount) Brands(context.Context) ([]zenklav.Brand, error) {
	return []zenklav.Brand{{ID: 1, Name: "Acme", Default: true, Active: true}, {ID: 2, Name: "Acme SMS", Active: true}}, nil
}

// ensure is the ZendeskAdmin's Ensure for a map of objects: the one of id, else the one of
// that name, updated where it differs; else a new one.
func ensure[K comparable, T any](z *zendeskAccount, objects map[K]T, id K, want T, name func(T) string, newID func() K, what string) (K, bool, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	var zero K
	if _, ok := objects[id]; !ok || id == zero {
		id = zero
		for k, v := range objects {
			if name(v) == name(want) {
				id = k
			}
		}
	}
	if id == zero {
		id = newID()
		objects[id] = want
		z.writes = append(z.writes, "create "+what)
		return id, true, nil
	}
	if fmt.Sprint(objects[id]) == fmt.Sprint(want) {
		return id, false, nil
	}
	objects[id] = want
	z.writes = append(z.writes, "update "+what)
	return id, true, nil
}

func (z *zendeskAccount) next() int64 { z.last++; return z.last }

func (z *zendeskAccount) EnsureWebhook(_ context.Context, id string, w zenklav.ZendeskWebhook) (string, bool, error) {
	return ensure(z, z.webhooks, id, w, func(w zenklav.ZendeskWebhook) string { return w.Name },
		func() string { return fmt.Sprintf("01WEBHOOK%d", z.next()) }, "webhook")
}

func (z *zendeskAccount) WebhookSigningSecret(_ context.Context, id string) (zenklav.Secret, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if _, ok := z.webhooks[id]; !ok {
		return "", zenklav.Errorf(zenklav.ENOTFOUND, "no webhook %s", id)
	}
	return zenklav.Secret("signing-secret-of-" + id), nil
}

func (z *zendeskAccount) DeleteWebhook(_ context.Context, id string) error {
	return z.remove(func() { delete(z.webhooks, id) }, "webhook")
}

func (z *zendeskAccount) EnsureAutomation(_ context.Context, id int64, a zenklav.ZendeskAutomation) (int64, bool, error) {
	return ensure(z, z.automations, id, a, func(a zenklav.ZendeskAutomation) string { return a.Title }, z.next, "automation")
}

func (z *zendeskAccount) DeleteAutomation(_ context.Context, id int64) error {
	return z.remove(func() { delete(z.automations, id) }, "automation")
}

func (z *zendeskAccount) EnsureView(_ context.Context, id int64, v zenklav.ZendeskView) (int64, bool, error) {
	return ensure(z, z.views, id, v, func(v zenklav.ZendeskView) string { return v.Title }, z.next, "view")
}

func (z *zendeskAccount) DeleteView(_ context.Context, id int64) error {
	return z.remove(func() { delete(z.views, id) }, "view")
}

func (z *zendeskAccount) remove(del func(), what string) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	del()
	z.writes = append(z.writes, "delete "+what)
	return nil
}

func (z *zendeskAccount) counts() string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return fmt.Sprintf("%d webhook(s), %d automation(s), %d view(s)", len(z.webhooks), len(z.automations), len(z.views))
}

// klaviyoAccount is a fake zenklav.KlaviyoAdmin.
type klaviyoAccount struct {
	mu       sync.Mutex
	webhooks map[string]zenklav.KlaviyoWebhook
	writes   int
	last     int
}

func (k *klaviyoAccount) EnsureWebhook(_ context.Context, id string, w zenklav.KlaviyoWebhook) (string, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.webhooks[id]; !ok {
		id = ""
		for i, o := range k.webhooks {
			if o.Name == w.Name {
				id = i
			}
		}
	}
	if id != "" && fmt.Sprint(k.webhooks[id], k.webhooks[id].SecretKey.Reveal()) == fmt.Sprint(w, w.SecretKey.Reveal()) {
		return id, false, nil
	}
	if id == "" {
		k.last++
		id = fmt.Sprintf("wh-%d", k.last)
	}
	k.webhooks[id] = w
	k.writes++
	return id, true, nil
}

func (k *klaviyoAccount) DeleteWebhook(_ context.Context, id string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.webhooks, id)
	k.writes++
	return nil
}

func (k *klaviyoAccount) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.webhooks)
}

// accounts are the fake accounts by Zendesk subdomain and Klaviyo key (or grant).
type accounts struct {
	mu      sync.Mutex
	zendesk map[string]*zendeskAccount
	klaviyo map[string]*klaviyoAccount
}

func (a *accounts) zendeskOf(subdomain string) *zendeskAccount {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.zendesk[subdomain] == nil {
		a.zendesk[subdomain] = newZendesk()
	}
	return a.zendesk[subdomain]
}

func (a *accounts) klaviyoOf(c *zenklav.Connection) *klaviyoAccount {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := c.Klaviyo.PrivateKey.Reveal()
	if c.Klaviyo.OAuth != nil {
		key = "grant:" + c.ID
	}
	if a.klaviyo[key] == nil {
		a.klaviyo[key] = &klaviyoAccount{webhooks: map[string]zenklav.KlaviyoWebhook{}}
	}
	return a.klaviyo[key]
}

// logs is a log sink tests read.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// fixture is a service on fakes.
type fixture struct {
	svc      *setup.Service
	store    *store
	accounts *accounts
	logs     *logs
}

func newFixture(t *testing.T, st *store, zendeskOAuth, klaviyoOAuth zenklav.OAuthProvider) *fixture {
	t.Helper()
	f := &fixture{store: st, accounts: &accounts{zendesk: map[string]*zendeskAccount{}, klaviyo: map[string]*klaviyoAccount{}}, logs: &logs{}}
	logger := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := setup.New(logger, setup.Config{
		PublicURL: "https://zenklav.example.com/", Store: st,
		Zendesk: func(c *zenklav.Connection) (zenklav.ZendeskAdmin, error) {
			return f.accounts.zendeskOf(c.Zendesk.Subdomain), nil
		},
		Klaviyo: func(c *zenklav.Connection) (zenklav.KlaviyoAdmin, error) { return f.accounts.klaviyoOf(c), nil },
		// A nil provider is a nil interface, as cmd/zenklav passes it.
		ZendeskOAuth: zendeskOAuth, KlaviyoOAuth: klaviyoOAuth,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

// draft is a connection as the wizard hands it to Finish: credentials and choices, no
// webhook secrets (Finish reads them back).
func draft(id string, brands zenklav.Brands, sms bool) zenklav.Connection {
	return zenklav.Connection{
		ID:      id,
		Zendesk: zenklav.ZendeskSettings{Subdomain: "acme", Email: "ops@acme.example", APIToken: "zendesk-api-token", Brands: brands},
		Klaviyo: zenklav.KlaviyoSettings{PrivateKey: zenklav.Secret("pk_" + id)},
		SMS:     zenklav.SMSSettings{Enabled: sms, Brand: 2, CloseSolved: sms, View: sms},
	}
}

func changed(changes []setup.Change) []string {
	var out []string
	for _, c := range changes {
		if c.Changed {
			out = append(out, c.What+" "+c.Action)
		}
	}
	return out
}

// Finish makes the webhook, the SMS automation and view and the Klaviyo webhook, and stores
// the connection with the secrets read back; run again, on what it returned or on the same
// draft, it writes nothing anywhere.
func TestFinishIdempotent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, newStore(), nil, nil)
	c, changes, err := f.svc.Finish(ctx, draft("acme", zenklav.Brands{All: true}, true))
	if err != nil {
		t.Fatal(err)
	}
	z, k := f.accounts.zendeskOf("acme"), f.accounts.klaviyoOf(&c)
	if got := changed(changes); len(got) != 5 {
		t.Errorf("first Finish changed %q, want the webhook, automation, view, Klaviyo webhook and the connection", got)
	}
	if z.counts() != "1 webhook(s), 1 automation(s), 1 view(s)" || k.count() != 1 {
		t.Fatalf("after Finish: Zendesk has %s, Klaviyo %d webhook(s)", z.counts(), k.count())
	}
	for id, w := range z.webhooks {
		if w.Endpoint != "https://zenklav.example.com/webhooks/zendesk/acme" || c.Made.ZendeskWebhook != id {
			t.Errorf("webhook %s: %+v, recorded %q", id, w, c.Made.ZendeskWebhook)
		}
		if got := c.WebhookSecrets(); len(got) != 1 || got[0] != "signing-secret-of-"+id {
			t.Errorf("the connection's signing secrets = %q, want the webhook's, read back", got)
		}
	}
	for _, w := range k.webhooks {
		if w.EndpointURL != "https://zenklav.example.com/webhooks/klaviyo/acme" || len(c.Klaviyo.WebhookSecrets) != 1 || w.SecretKey != c.Klaviyo.WebhookSecrets[0] {
			t.Errorf("Klaviyo webhook %+v; the connection's secrets %d", w, len(c.Klaviyo.WebhookSecrets))
		}
	}
	stored, err := f.store.Get("acme")
	if err != nil || !connstore.Same(stored.Connection, c) || stored.Disabled {
		t.Fatalf("stored = %+v, %v; want the connection Finish returned, enabled", stored, err)
	}
	zWrites, kWrites, puts := len(z.writes), k.writes, f.store.puts
	again, changes, err := f.svc.Finish(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := changed(changes); len(got) != 0 || len(z.writes) != zWrites || k.writes != kWrites || f.store.puts != puts {
		t.Errorf("second Finish changed %q; writes Zendesk %v, Klaviyo %d → %d, store puts %d → %d", got, z.writes[zWrites:], kWrites, k.writes, puts, f.store.puts)
	}
	if !connstore.Same(again, c) {
		t.Errorf("second Finish returned another connection")
	}
	// The draft alone, with nothing recorded (the store lost, the wizard run afresh), finds
	// the objects by name instead of duplicating them; only the Klaviyo webhook's secret,
	// which zenklav chooses, is new.
	_, _, err = f.svc.Finish(ctx, draft("acme", zenklav.Brands{All: true}, true))
	if err != nil {
		t.Fatal(err)
	}
	if z.counts() != "1 webhook(s), 1 automation(s), 1 view(s)" || k.count() != 1 {
		t.Errorf("after a Finish of the bare draft: Zendesk has %s, Klaviyo %d webhook(s)", z.counts(), k.count())
	}
}

// SMS turned off removes the automation, the view and the Klaviyo webhook Finish made for it,
// and keeps the event webhook.
func TestFinishSMSOff(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, newStore(), nil, nil)
	c, _, err := f.svc.Finish(ctx, draft("acme", zenklav.Brands{All: true}, true))
	if err != nil {
		t.Fatal(err)
	}
	c.SMS = zenklav.SMSSettings{}
	off, changes, err := f.svc.Finish(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Zendesk automation removed", "Zendesk view removed", "Klaviyo webhook removed", "connection acme stored"}
	if got := changed(changes); !slices.Equal(got, want) {
		t.Errorf("changes = %q, want %q", got, want)
	}
	z, k := f.accounts.zendeskOf("acme"), f.accounts.klaviyoOf(&off)
	if z.counts() != "1 webhook(s), 0 automation(s), 0 view(s)" || k.count() != 0 {
		t.Errorf("after SMS off: Zendesk has %s, Klaviyo %d webhook(s)", z.counts(), k.count())
	}
	if m := off.Made; m.ZendeskAutomation != 0 || m.ZendeskView != 0 || m.KlaviyoWebhook != "" || m.ZendeskWebhook == "" {
		t.Errorf("made = %+v, want the webhook alone", m)
	}
}

// Two connections of one Zendesk account (split by brand) share its webhook, automation and
// view: disconnecting one leaves them to the other, and removes its own Klaviyo webhook and
// grant; disconnecting the last removes everything.
func TestDisconnectKeepsShared(t *testing.T) {
	ctx := context.Background()
	zo, ko := newProvider("zendesk"), newProvider("klaviyo")
	f := newFixture(t, newStore(), zo, ko)
	us, _, err := f.svc.Finish(ctx, draft("acme-us", zenklav.Brands{IDs: []int64{1}}, true))
	if err != nil {
		t.Fatal(err)
	}
	eu := draft("acme-eu", zenklav.Brands{IDs: []int64{2}}, true)
	eu.Klaviyo = zenklav.KlaviyoSettings{OAuth: ko.grant(time.Now().Add(time.Hour))} // a grant, revoked on disconnect
	eu, _, err = f.svc.Finish(ctx, eu)
	if err != nil {
		t.Fatal(err)
	}
	z := f.accounts.zendeskOf("acme")
	if us.Made.ZendeskWebhook != eu.Made.ZendeskWebhook || us.Made.ZendeskAutomation != eu.Made.ZendeskAutomation || z.counts() != "1 webhook(s), 1 automation(s), 1 view(s)" {
		t.Fatalf("the account's connections made %+v and %+v; Zendesk has %s", us.Made, eu.Made, z.counts())
	}
	changes, err := f.svc.Disconnect(ctx, "acme-eu")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := changed(changes), []string{"Klaviyo webhook removed", "Klaviyo grant revoked", "connection acme-eu removed"}; !slices.Equal(got, want) {
		t.Errorf("disconnecting acme-eu: %q, want %q", got, want)
	}
	if z.counts() != "1 webhook(s), 1 automation(s), 1 view(s)" || f.accounts.klaviyoOf(&eu).count() != 0 || f.accounts.klaviyoOf(&us).count() != 1 {
		t.Errorf("after disconnecting acme-eu: Zendesk has %s, its Klaviyo %d webhook(s), acme-us's %d", z.counts(),
			f.accounts.klaviyoOf(&eu).count(), f.accounts.klaviyoOf(&us).count())
	}
	if ko.revoked() != 1 {
		t.Errorf("Klaviyo grants revoked: %d, want 1", ko.revoked())
	}
	if _, err := f.store.Get("acme-eu"); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("acme-eu is still stored: %v", err)
	}
	changes, err = f.svc.Disconnect(ctx, "acme-us")
	if err != nil {
		t.Fatal(err)
	}
	if got := changed(changes); len(got) != 5 || z.counts() != "0 webhook(s), 0 automation(s), 0 view(s)" {
		t.Errorf("disconnecting the last connection: %q; Zendesk has %s", got, z.counts())
	}
	if _, err := f.svc.Disconnect(ctx, "acme-us"); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("a second disconnect = %v, want not found", err)
	}
}
