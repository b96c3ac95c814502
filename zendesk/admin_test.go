package zendesk_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

var (
	testWebhook = zenklav.ZendeskWebhook{
		Name:          "zenklav ticket events",
		Endpoint:      "https://zenklav.example.com/webhooks/zendesk/acme",
		Subscriptions: []string{"zen:event-type:ticket.comment_added", "zen:event-type:ticket.status_changed"},
	}
	testAutomation = zenklav.ZendeskAutomation{
		Title: "Close SMS tickets 24h after solved",
		Conditions: []zenklav.Condition{
			{Field: "status", Operator: "is", Value: "solved"},
			{Field: "SOLVED", Operator: "is", Value: "24"},
			{Field: "current_tags", Operator: "includes", Value: "sms"},
		},
		Actions: []zenklav.Action{{Field: "status", Value: "closed"}},
	}
	testView = zenklav.ZendeskView{
		Title: "Klaviyo SMS",
		Conditions: []zenklav.Condition{
			{Field: "status", Operator: "is_not", Value: "closed"},
			{Field: "current_tags", Operator: "includes", Value: "sms"},
		},
		Columns: []string{"status", "subject", "requester", "updated"},
	}
)

// writes returns the writes sim took since before.
func writes(sim *zendesktest.Server, before int) []zendesktest.Write {
	return sim.Writes()[before:]
}

func TestBrandsDefault(t *testing.T) {
	sim := newSim(t)
	first := sim.AddBrand(zendesk.Brand{Name: "Zeta", Active: true})
	second := sim.AddBrand(zendesk.Brand{Name: "Alpha"})
	got, err := newClient(t, sim.URL).Brands(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []zenklav.Brand{{ID: second.ID, Name: "Alpha"}, {ID: first.ID, Name: "Zeta", Default: true, Active: true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Brands = %+v, want %+v", got, want)
	}
}

func TestEnsureWebhook(t *testing.T) {
	sim := newSim(t)
	c := newClient(t, sim.URL)
	ctx := context.Background()

	id, changed, err := c.EnsureWebhook(ctx, "", testWebhook)
	if err != nil || !changed || id == "" {
		t.Fatalf("first EnsureWebhook = %q, %t, %v; want a new webhook", id, changed, err)
	}
	want := zendesktest.Webhook{
		ID: id, Name: testWebhook.Name, Endpoint: testWebhook.Endpoint, HTTPMethod: "POST", RequestFormat: "json",
		Status: "active", Subscriptions: testWebhook.Subscriptions,
	}
	assertWebhooks(t, sim, want)

	// Again, by id and by name: nothing to write.
	before := len(sim.Writes())
	for _, by := range []string{id, ""} {
		again, changed, err := c.EnsureWebhook(ctx, by, testWebhook)
		if err != nil || changed || again != id {
			t.Errorf("EnsureWebhook(%q) again = %q, %t, %v; want %q unchanged", by, again, changed, err, id)
		}
	}
	if w := writes(sim, before); len(w) != 0 {
		t.Errorf("ensuring an unchanged webhook wrote %v", w)
	}

	// Subscriptions in another order are the same webhook.
	reordered := testWebhook
	reordered.Subscriptions = []string{testWebhook.Subscriptions[1], testWebhook.Subscriptions[0]}
	if _, changed, err := c.EnsureWebhook(ctx, id, reordered); err != nil || changed {
		t.Errorf("reordered subscriptions: changed %t, %v; want unchanged", changed, err)
	}

	// A new endpoint updates the same webhook.
	moved := testWebhook
	moved.Endpoint = "https://zenklav2.example.com/webhooks/zendesk/acme"
	if again, changed, err := c.EnsureWebhook(ctx, id, moved); err != nil || !changed || again != id {
		t.Errorf("moved webhook = %q, %t, %v; want %q changed", again, changed, err, id)
	}
	want.Endpoint = moved.Endpoint
	assertWebhooks(t, sim, want)

	// Deleted out of band: made again, under a new id.
	if err := c.DeleteWebhook(ctx, id); err != nil {
		t.Fatal(err)
	}
	made, changed, err := c.EnsureWebhook(ctx, id, testWebhook)
	if err != nil || !changed || made == id || made == "" {
		t.Errorf("EnsureWebhook of a deleted webhook = %q, %t, %v; want a new one", made, changed, err)
	}
	want.ID, want.Endpoint = made, testWebhook.Endpoint
	assertWebhooks(t, sim, want)

	for range 2 {
		if err := c.DeleteWebhook(ctx, made); err != nil {
			t.Errorf("DeleteWebhook: %v, want nil even when gone", err)
		}
	}
	assertWebhooks(t, sim)
}

// assertWebhooks checks the webhooks sim has, apart from their secrets and times.
func assertWebhooks(t *testing.T, sim *zendesktest.Server, want ...zendesktest.Webhook) {
	t.Helper()
	got := sim.Webhooks()
	for i := range got {
		if len(got[i].SigningSecret) < 16 {
			t.Errorf("webhook %s has signing secret of %d characters", got[i].ID, len(got[i].SigningSecret))
		}
		got[i].SigningSecret, got[i].CreatedAt, got[i].UpdatedAt = "", time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
		t.Errorf("webhooks = %+v\nwant %+v", got, want)
	}
}

func TestEnsureWebhookRefused(t *testing.T) {
	c := newClient(t, newSim(t).URL)
	for name, w := range map[string]zenklav.ZendeskWebhook{
		"no name":          {Endpoint: testWebhook.Endpoint, Subscriptions: testWebhook.Subscriptions},
		"no subscriptions": {Name: "x", Endpoint: testWebhook.Endpoint},
	} {
		if _, _, err := c.EnsureWebhook(context.Background(), "", w); zenklav.ErrorCode(err) != zenklav.EINVALID {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	// What only Zendesk checks comes back from it as invalid too.
	bad := testWebhook
	bad.Subscriptions = []string{"ticket.comment_added"}
	if _, _, err := c.EnsureWebhook(context.Background(), "", bad); zenklav.ErrorCode(err) != zenklav.EINVALID {
		t.Errorf("subscription without its prefix: %v, want invalid", err)
	}
}

// TestWebhookDelivers: a webhook set up through the API gets the account's events, signed
// with the secret WebhookSigningSecret reads, with no other configuration.
func TestWebhookDelivers(t *testing.T) {
	sim := newSim(t)
	c := newClient(t, sim.URL)
	ctx := context.Background()
	type delivery struct {
		header http.Header
		body   []byte
	}
	got := make(chan delivery, 8)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{r.Header.Clone(), b}
	}))
	defer target.Close()

	w := testWebhook
	w.Endpoint = target.URL
	w.Subscriptions = []string{"zen:event-type:ticket.created"}
	id, _, err := c.EnsureWebhook(ctx, "", w)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := c.WebhookSigningSecret(ctx, id)
	if err != nil || len(secret.Reveal()) < 16 {
		t.Fatalf("WebhookSigningSecret = %d characters, %v", len(secret.Reveal()), err)
	}
	customer := sim.AddUser(zendesk.User{Name: "Jo", Phone: "+15555550123"})
	ticket, err := c.CreateTicket(ctx, zenklav.NewTicket{RequesterID: customer.ID, Subject: "Hi", Comment: zenklav.DeskComment{Body: "Hello", Public: true}}, "key-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.FlushWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d.header.Get(zendesk.HeaderWebhookID) != id {
			t.Errorf("webhook id header = %q, want %q", d.header.Get(zendesk.HeaderWebhookID), id)
		}
		err := zendesk.VerifySignature([]string{secret.Reveal()}, d.header.Get(zendesk.HeaderSignature), d.header.Get(zendesk.HeaderSignatureTimestamp), d.body, time.Now())
		if err != nil {
			t.Errorf("delivery does not verify with the webhook's secret: %v", err)
		}
		if !strings.Contains(string(d.body), `"zen:event-type:ticket.created"`) || !strings.Contains(string(d.body), `"zen:ticket:`) {
			t.Errorf("delivery = %s, want ticket %d's ticket.created", d.body, ticket.ID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
	// The comment a status change would send is not subscribed to.
	if err := c.Comment(ctx, ticket.ID, zenklav.DeskComment{Body: "More", Public: true}, "open"); err != nil {
		t.Fatal(err)
	}
	sim.FlushWebhooks(ctx)
	select {
	case d := <-got:
		t.Errorf("unsubscribed event delivered: %s", d.body)
	default:
	}
	if _, err := c.WebhookSigningSecret(ctx, "01NOSUCHWEBHOOK0000000000"); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("secret of a missing webhook: %v, want not found", err)
	}
}

func TestEnsureAutomation(t *testing.T) {
	sim := newSim(t)
	c := newClient(t, sim.URL)
	ctx := context.Background()

	id, changed, err := c.EnsureAutomation(ctx, 0, testAutomation)
	if err != nil || !changed || id == 0 {
		t.Fatalf("first EnsureAutomation = %d, %t, %v; want a new automation", id, changed, err)
	}
	want := zendesktest.Automation{ID: id, Title: testAutomation.Title, Active: true, All: testAutomation.Conditions, Any: []zenklav.Condition{}, Actions: testAutomation.Actions}
	assertAutomations(t, sim, want)

	before := len(sim.Writes())
	for _, by := range []int64{id, 0} {
		if again, changed, err := c.EnsureAutomation(ctx, by, testAutomation); err != nil || changed || again != id {
			t.Errorf("EnsureAutomation(%d) again = %d, %t, %v; want %d unchanged", by, again, changed, err, id)
		}
	}
	if w := writes(sim, before); len(w) != 0 {
		t.Errorf("ensuring an unchanged automation wrote %v", w)
	}

	later := testAutomation
	later.Conditions = slices.Clone(testAutomation.Conditions)
	later.Conditions[1].Value = "48"
	if again, changed, err := c.EnsureAutomation(ctx, id, later); err != nil || !changed || again != id {
		t.Errorf("changed hours = %d, %t, %v; want %d changed", again, changed, err, id)
	}
	want.All = later.Conditions
	assertAutomations(t, sim, want)

	if err := c.DeleteAutomation(ctx, id); err != nil {
		t.Fatal(err)
	}
	made, changed, err := c.EnsureAutomation(ctx, id, testAutomation)
	if err != nil || !changed || made == id {
		t.Errorf("EnsureAutomation of a deleted automation = %d, %t, %v; want a new one", made, changed, err)
	}
	for range 2 {
		if err := c.DeleteAutomation(ctx, made); err != nil {
			t.Errorf("DeleteAutomation: %v, want nil even when gone", err)
		}
	}
	if got := sim.Automations(); len(got) != 0 {
		t.Errorf("automations left: %+v", got)
	}

	// Zendesk's rules come back as invalid: an automation needs a time-based condition.
	timeless := testAutomation
	timeless.Conditions = []zenklav.Condition{{Field: "status", Operator: "is", Value: "solved"}}
	if _, _, err := c.EnsureAutomation(ctx, 0, timeless); zenklav.ErrorCode(err) != zenklav.EINVALID {
		t.Errorf("automation without a time condition: %v, want invalid", err)
	}
}

func assertAutomations(t *testing.T, sim *zendesktest.Server, want ...zendesktest.Automation) {
	t.Helper()
	got := sim.Automations()
	for i := range got {
		got[i].CreatedAt, got[i].UpdatedAt = time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("automations = %+v\nwant %+v", got, want)
	}
}

func TestEnsureView(t *testing.T) {
	sim := newSim(t)
	c := newClient(t, sim.URL)
	ctx := context.Background()

	id, changed, err := c.EnsureView(ctx, 0, testView)
	if err != nil || !changed || id == 0 {
		t.Fatalf("first EnsureView = %d, %t, %v; want a new view", id, changed, err)
	}
	want := zendesktest.View{ID: id, Title: testView.Title, Active: true, All: testView.Conditions, Any: []zenklav.Condition{}, Columns: testView.Columns}
	assertViews(t, sim, want)

	before := len(sim.Writes())
	for _, by := range []int64{id, 0} {
		if again, changed, err := c.EnsureView(ctx, by, testView); err != nil || changed || again != id {
			t.Errorf("EnsureView(%d) again = %d, %t, %v; want %d unchanged", by, again, changed, err, id)
		}
	}
	if w := writes(sim, before); len(w) != 0 {
		t.Errorf("ensuring an unchanged view wrote %v", w)
	}

	// Columns in another order are another view.
	swapped := testView
	swapped.Columns = []string{"subject", "status", "requester", "updated"}
	if again, changed, err := c.EnsureView(ctx, id, swapped); err != nil || !changed || again != id {
		t.Errorf("swapped columns = %d, %t, %v; want %d changed", again, changed, err, id)
	}
	want.Columns = swapped.Columns
	assertViews(t, sim, want)

	if err := c.DeleteView(ctx, id); err != nil {
		t.Fatal(err)
	}
	made, changed, err := c.EnsureView(ctx, id, testView)
	if err != nil || !changed || made == id {
		t.Errorf("EnsureView of a deleted view = %d, %t, %v; want a new one", made, changed, err)
	}
	for range 2 {
		if err := c.DeleteView(ctx, made); err != nil {
			t.Errorf("DeleteView: %v, want nil even when gone", err)
		}
	}
	if got := sim.Views(); len(got) != 0 {
		t.Errorf("views left: %+v", got)
	}
}

func assertViews(t *testing.T, sim *zendesktest.Server, want ...zendesktest.View) {
	t.Helper()
	got := sim.Views()
	for i := range got {
		got[i].CreatedAt, got[i].UpdatedAt = time.Time{}, time.Time{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("views = %+v\nwant %+v", got, want)
	}
}

// TestSetupTwiceWritesOnce runs a whole setup with an OAuth grant twice: the second run
// finds everything as the first left it and writes nothing.
func TestSetupTwiceWritesOnce(t *testing.T) {
	sim := newSim(t)
	tok := connect(t, sim, newOAuth(sim))
	c := bearerClient(t, sim, func() zenklav.Secret { return tok.AccessToken })
	ctx := context.Background()
	var made zenklav.Made
	setup := func() (changed []bool) {
		var ch bool
		var err error
		if made.ZendeskWebhook, ch, err = c.EnsureWebhook(ctx, made.ZendeskWebhook, testWebhook); err != nil {
			t.Fatal(err)
		}
		changed = append(changed, ch)
		if made.ZendeskAutomation, ch, err = c.EnsureAutomation(ctx, made.ZendeskAutomation, testAutomation); err != nil {
			t.Fatal(err)
		}
		changed = append(changed, ch)
		if made.ZendeskView, ch, err = c.EnsureView(ctx, made.ZendeskView, testView); err != nil {
			t.Fatal(err)
		}
		return append(changed, ch)
	}
	if ch := setup(); !slices.Equal(ch, []bool{true, true, true}) {
		t.Errorf("first setup changed %v, want all", ch)
	}
	want := []zendesktest.Write{
		{Method: "POST", Path: "/api/v2/webhooks", Status: 201},
		{Method: "POST", Path: "/api/v2/automations", Status: 201},
		{Method: "POST", Path: "/api/v2/views", Status: 200},
	}
	if got := sim.Writes(); !reflect.DeepEqual(got, want) {
		t.Errorf("first setup wrote %v, want %v", got, want)
	}
	if ch := setup(); !slices.Equal(ch, []bool{false, false, false}) {
		t.Errorf("second setup changed %v, want nothing", ch)
	}
	if got := sim.Writes(); len(got) != len(want) {
		t.Errorf("second setup wrote %v", got[len(want):])
	}
	if len(sim.Webhooks()) != 1 || len(sim.Automations()) != 1 || len(sim.Views()) != 1 {
		t.Errorf("account has %d webhooks, %d automations, %d views; want one each", len(sim.Webhooks()), len(sim.Automations()), len(sim.Views()))
	}
}
