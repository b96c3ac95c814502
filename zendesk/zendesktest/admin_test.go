package zendesktest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

const goodHook = `{"webhook":{"name":"Zenklav Events","endpoint":"https://h.example.com/z","http_method":"POST","request_format":"json","status":"active","subscriptions":["zen:event-type:ticket.created"]}}`

var webhookIDPattern = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`)

func createHook(t *testing.T, sim *zendesktest.Server, body string) string {
	t.Helper()
	status, _, answer := send(t, sim, "POST", "/api/v2/webhooks", body, nil)
	var made struct {
		Webhook struct {
			ID string `json:"id"`
		} `json:"webhook"`
	}
	json.Unmarshal([]byte(answer), &made)
	if status != 201 || !webhookIDPattern.MatchString(made.Webhook.ID) {
		t.Fatalf("create webhook: %d %s", status, answer)
	}
	return made.Webhook.ID
}

func TestWebhooksAPIRefuses(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	tests := []struct {
		name, body, detail string
	}{
		{"not wrapped", `{"name":"x"}`, `the body must be`},
		{"unknown field", strings.Replace(goodHook, `"status"`, `"colour":"red","status"`, 1), "unknown field"},
		{"no name", strings.Replace(goodHook, `"name":"Zenklav Events",`, ``, 1), "name is required"},
		{"relative endpoint", strings.Replace(goodHook, `https://h.example.com/z`, `/z`, 1), "endpoint"},
		{"events by GET", strings.Replace(goodHook, `"POST"`, `"GET"`, 1), "POST"},
		{"events as xml", strings.Replace(goodHook, `"json"`, `"xml"`, 1), "request_format json"},
		{"no subscriptions", strings.Replace(goodHook, `"zen:event-type:ticket.created"`, ``, 1), "subscriptions"},
		{"not an event type", strings.Replace(goodHook, `zen:event-type:ticket.created`, `ticket.created`, 1), "not an event type"},
		{"conditional and events", strings.Replace(goodHook, `"zen:event-type:ticket.created"`, `"conditional_ticket_events","zen:event-type:ticket.created"`, 1), "conditional_ticket_events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := send(t, sim, "POST", "/api/v2/webhooks", tt.body, nil)
			if status != 400 || !strings.Contains(body, `"errors"`) || !strings.Contains(body, tt.detail) {
				t.Errorf("%d %s, want 400 saying %q", status, body, tt.detail)
			}
		})
	}
	if status, _, _ := send(t, sim, "GET", "/api/v2/webhooks", "", http.Header{"Authorization": {"Basic eDp5"}}); status != 401 {
		t.Errorf("wrong credentials: %d, want 401", status)
	}
	if len(sim.Webhooks()) != 0 || len(sim.Writes()) != 0 {
		t.Errorf("refused requests left %d webhooks and %d writes", len(sim.Webhooks()), len(sim.Writes()))
	}
}

func TestWebhooksAPI(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	id := createHook(t, sim, goodHook)
	other := createHook(t, sim, strings.Replace(goodHook, "Zenklav Events", "Other", 1))

	status, _, body := send(t, sim, "GET", "/api/v2/webhooks/"+id, "", nil)
	if status != 200 || !strings.Contains(body, `"name":"Zenklav Events"`) || strings.Contains(body, "secret") {
		t.Errorf("show: %d %s, want the webhook without its secret", status, body)
	}
	// PATCH changes what it names; PUT replaces all and must name all.
	if status, _, body := send(t, sim, "PATCH", "/api/v2/webhooks/"+id, `{"webhook":{"status":"inactive"}}`, nil); status != 204 {
		t.Errorf("patch: %d %s", status, body)
	}
	if status, _, body := send(t, sim, "PUT", "/api/v2/webhooks/"+id, `{"webhook":{"name":"Renamed"}}`, nil); status != 400 {
		t.Errorf("partial put: %d %s, want 400", status, body)
	}
	if w := sim.Webhooks()[0]; w.Status != "inactive" || w.Name != "Zenklav Events" || w.Endpoint != "https://h.example.com/z" {
		t.Errorf("after patch: %+v", w)
	}

	// filter[name_contains] is case-insensitive; page[size] pages by cursor.
	status, _, body = send(t, sim, "GET", "/api/v2/webhooks?filter%5Bname_contains%5D=zenklav", "", nil)
	if status != 200 || !strings.Contains(body, id) || strings.Contains(body, other) {
		t.Errorf("filtered list: %d %s, want only %s", status, body, id)
	}
	status, _, body = send(t, sim, "GET", "/api/v2/webhooks?page%5Bsize%5D=1", "", nil)
	if status != 200 || !strings.Contains(body, `"has_more":true`) || !strings.Contains(body, "page%5Bafter%5D") {
		t.Errorf("first page of 1: %d %s, want has_more and a next link", status, body)
	}

	secret := func(method string) string {
		status, _, body := send(t, sim, method, "/api/v2/webhooks/"+id+"/signing_secret", "", nil)
		var s struct {
			SigningSecret struct{ Secret, Algorithm string } `json:"signing_secret"`
		}
		json.Unmarshal([]byte(body), &s)
		if status/100 != 2 || len(s.SigningSecret.Secret) < 16 {
			t.Fatalf("%s signing secret: %d %s", method, status, body)
		}
		return s.SigningSecret.Secret
	}
	first := secret("GET")
	if first != sim.Webhooks()[0].SigningSecret || secret("GET") != first {
		t.Errorf("signing secret is not the webhook's, or not stable")
	}
	if secret("POST") == first {
		t.Errorf("reset kept the secret")
	}

	if status, _, _ := send(t, sim, "DELETE", "/api/v2/webhooks/"+id, "", nil); status != 204 {
		t.Errorf("delete: %d", status)
	}
	for _, path := range []string{"/api/v2/webhooks/" + id, "/api/v2/webhooks/" + id + "/signing_secret"} {
		if status, _, body := send(t, sim, "GET", path, "", nil); status != 404 || !strings.Contains(body, "NotFound") {
			t.Errorf("GET %s after delete: %d %s", path, status, body)
		}
	}
	if status, _, _ := send(t, sim, "DELETE", "/api/v2/webhooks/"+id, "", nil); status != 404 {
		t.Errorf("second delete: %d, want 404", status)
	}
	want := []string{"POST /api/v2/webhooks", "POST /api/v2/webhooks", "PATCH /api/v2/webhooks/" + id,
		"POST /api/v2/webhooks/" + id + "/signing_secret", "DELETE /api/v2/webhooks/" + id}
	var got []string
	for _, w := range sim.Writes() {
		got = append(got, w.Method+" "+w.Path)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("writes = %q, want %q", got, want)
	}
}

// TestRegisteredWebhooksGetEvents: events go to the configured target and to each active
// webhook subscribed to them, each signed with its own secret and named by its own id.
func TestRegisteredWebhooksGetEvents(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	configured, toConfigured := newTarget(t)
	registered, toRegistered := newTarget(t)
	sim.SetWebhookTarget(configured.URL, testSecret)
	subscribe := func(endpoint, event string) zendesktest.Webhook {
		body := strings.NewReplacer("https://h.example.com/z", endpoint, "ticket.created", event).Replace(goodHook)
		id := createHook(t, sim, body)
		for _, w := range sim.Webhooks() {
			if w.ID == id {
				return w
			}
		}
		t.Fatalf("webhook %s not stored", id)
		return zendesktest.Webhook{}
	}
	hook := subscribe(registered.URL, "ticket.created")
	subscribe(registered.URL, "ticket.status_changed")
	subscribe(configured.URL, "ticket.created") // the target already gets it: sent once
	paused := subscribe(registered.URL, "ticket.created")
	if status, _, _ := send(t, sim, "PATCH", "/api/v2/webhooks/"+paused.ID, `{"webhook":{"status":"inactive"}}`, nil); status != 204 {
		t.Fatal("pause webhook")
	}

	user := sim.AddUser(zendesk.User{Name: "Jo", Email: "jo@example.com"})
	ticket := `{"ticket":{"requester_id":` + jsonNumber(user.ID) + `,"comment":{"body":"Hi","public":true}}}`
	if status, _, body := send(t, sim, "POST", "/api/v2/tickets", ticket, nil); status != 201 {
		t.Fatalf("create ticket: %d %s", status, body)
	}
	if err := sim.FlushWebhooks(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := next(t, toConfigured) // checks testSecret's signature
	if d.header.Get(zendesk.HeaderWebhookID) != zendesktest.WebhookID {
		t.Errorf("configured target got webhook id %q", d.header.Get(zendesk.HeaderWebhookID))
	}
	select {
	case d := <-toRegistered:
		ts := d.header.Get(zendesk.HeaderSignatureTimestamp)
		if d.header.Get(zendesk.HeaderSignature) != zendesk.Sign(hook.SigningSecret, ts, d.body) || d.header.Get(zendesk.HeaderWebhookID) != hook.ID {
			t.Errorf("registered webhook's delivery is not signed with its secret under its id")
		}
		if !strings.Contains(string(d.body), "ticket.created") {
			t.Errorf("registered webhook got %s", d.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("registered webhook got nothing")
	}
	select {
	case d := <-toRegistered:
		t.Errorf("a second delivery reached the registered endpoint (paused or unsubscribed webhook): %s", d.body)
	case d := <-toConfigured:
		t.Errorf("the configured target got the event twice: %s", d.body)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestSandboxReachesRegisteredWebhooks: with no target configured, the sandbox endpoint
// sends to the webhooks a setup made.
func TestSandboxReachesRegisteredWebhooks(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	registered, got := newTarget(t)
	createHook(t, sim, strings.Replace(goodHook, "https://h.example.com/z", registered.URL, 1))
	resp, err := http.Post(sim.URL+"/sandbox/webhooks?event=ticket.created", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("sandbox: %d, want the registered endpoint's 202", resp.StatusCode)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing delivered")
	}
	resp, _ = http.Post(sim.URL+"/sandbox/webhooks?event=ticket.status_changed", "", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("sandbox event nobody subscribes to: %d, want 409", resp.StatusCode)
	}
}

func TestAutomationsAPI(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	defer sim.AssertNoViolations(t)
	const good = `{"automation":{"title":"Close","active":true,"conditions":{"all":[{"field":"status","operator":"is","value":"solved"},{"field":"SOLVED","operator":"is","value":24}],"any":[]},"actions":[{"field":"status","value":"closed"}]}}`
	tests := []struct{ name, body, want string }{
		{"no title", strings.Replace(good, `"Close"`, `""`, 1), "Title"},
		{"no time condition", strings.Replace(good, `"SOLVED"`, `"priority"`, 1), "time-based"},
		{"no ticket field", strings.Replace(good, `{"field":"status","operator":"is","value":"solved"},`, `{"field":"current_tags","operator":"includes","value":"sms"},`, 1), "checks status"},
		{"never stops", strings.NewReplacer(`"operator":"is","value":24`, `"operator":"greater_than","value":24`, `"value":"closed"`, `"value":"solved"`).Replace(good), "only once"},
	}
	for _, tt := range tests {
		if status, _, body := send(t, sim, "POST", "/api/v2/automations", tt.body, nil); status != 422 || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %s, want 422 saying %s", tt.name, status, body, tt.want)
		}
	}
	status, _, body := send(t, sim, "POST", "/api/v2/automations", good, nil)
	if status != 201 || !strings.Contains(body, `"value":"24"`) {
		t.Fatalf("create: %d %s, want the number kept as the spec's string", status, body)
	}
	if status, _, body := send(t, sim, "POST", "/api/v2/automations", good, nil); status != 422 || !strings.Contains(body, "identical") {
		t.Errorf("identical second automation: %d %s, want 422", status, body)
	}
	id := sim.Automations()[0].ID
	// Conditions without actions clear the actions, as Zendesk documents: refused.
	path := "/api/v2/automations/" + jsonNumber(id)
	if status, _, body := send(t, sim, "PUT", path, `{"automation":{"conditions":{"all":[{"field":"status","operator":"is","value":"solved"},{"field":"SOLVED","operator":"is","value":"48"}]}}}`, nil); status != 422 {
		t.Errorf("update of conditions alone: %d %s, want 422 (no actions left)", status, body)
	}
	if status, _, body := send(t, sim, "PUT", path, `{"automation":{"title":"Close later"}}`, nil); status != 200 || !strings.Contains(body, `"title":"Close later"`) {
		t.Errorf("rename: %d %s", status, body)
	}
	want := zendesktest.Automation{ID: id, Title: "Close later", Active: true,
		All:     []zenklav.Condition{{Field: "status", Operator: "is", Value: "solved"}, {Field: "SOLVED", Operator: "is", Value: "24"}},
		Any:     []zenklav.Condition{},
		Actions: []zenklav.Action{{Field: "status", Value: "closed"}}}
	got := sim.Automations()[0]
	got.CreatedAt, got.UpdatedAt = time.Time{}, time.Time{}
	if !equalJSON(got, want) {
		t.Errorf("stored %+v, want %+v", got, want)
	}
	if status, _, body := send(t, sim, "GET", "/api/v2/automations?page%5Bsize%5D=1", "", nil); status != 200 || !strings.Contains(body, `"has_more":false`) {
		t.Errorf("list: %d %s", status, body)
	}
}

func TestViewsAPI(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	defer sim.AssertNoViolations(t)
	const good = `{"view":{"title":"SMS","all":[{"field":"status","operator":"is_not","value":"closed"},{"field":"current_tags","operator":"includes","value":"sms"}],"output":{"columns":["status","subject",360001]}}}`
	if status, _, body := send(t, sim, "POST", "/api/v2/views", strings.Replace(good, `{"field":"status","operator":"is_not","value":"closed"},`, "", 1), nil); status != 422 {
		t.Errorf("view without a ticket field condition: %d %s, want 422", status, body)
	}
	status, _, body := send(t, sim, "POST", "/api/v2/views", good, nil)
	if status != 200 || !strings.Contains(body, `"execution"`) || !strings.Contains(body, `"id":360001`) {
		t.Fatalf("create: %d %s", status, body)
	}
	v := sim.Views()[0]
	if v.Title != "SMS" || !v.Active || strings.Join(v.Columns, ",") != "status,subject,360001" || len(v.All) != 2 {
		t.Errorf("stored %+v", v)
	}
	// An update sets only what it gives.
	if status, _, body := send(t, sim, "PUT", "/api/v2/views/"+jsonNumber(v.ID), `{"view":{"output":{"columns":["status"]}}}`, nil); status != 200 {
		t.Errorf("update: %d %s", status, body)
	}
	if v := sim.Views()[0]; strings.Join(v.Columns, ",") != "status" || len(v.All) != 2 || v.Title != "SMS" {
		t.Errorf("after update %+v", v)
	}
	if status, _, _ := send(t, sim, "DELETE", "/api/v2/views/"+jsonNumber(v.ID), "", nil); status != 204 {
		t.Errorf("delete: %d", status)
	}
	if status, _, _ := send(t, sim, "GET", "/api/v2/views/"+jsonNumber(v.ID), "", nil); status != 404 {
		t.Errorf("show deleted: %d", status)
	}
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
