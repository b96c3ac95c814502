package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics/analyticstest"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// browserResult is what sidebar.e2e.mjs reports of one scenario.
type browserResult struct {
	Name          string `json:"name"`
	Error         string `json:"error"`
	State         string `json:"state"`
	Text          string `json:"text"`
	FirstRenderMs int    `json:"firstRenderMs"`
	Theme         string `json:"theme"`
	Lang          string `json:"lang"`
	Background    string `json:"background"`
	Links         []struct {
		Href, Target, Rel, Text string
	} `json:"links"`
	Sections []string `json:"sections"`
	Host     struct {
		LastResize    *struct{ Height any } `json:"lastResize"`
		IframeHeight  float64               `json:"iframeHeight"`
		Subscriptions map[string]int        `json:"subscriptions"`
		Rejected      []any                 `json:"rejected"`
		Requests      []any                 `json:"requests"`
	} `json:"host"`
	ConsoleErrors  []string `json:"consoleErrors"`
	FailedRequests []string `json:"failedRequests"`
}

// browser is sidebar.e2e.mjs running headless Chromium, one scenario per line.
type browser struct {
	in  io.WriteCloser
	out *bufio.Scanner
}

func (b *browser) run(t *testing.T, sc map[string]any) browserResult {
	t.Helper()
	b.send(t, sc)
	return b.next(t)
}

// send writes one line to the script: a scenario, or the go-ahead of an awaiting step.
func (b *browser) send(t *testing.T, v any) {
	t.Helper()
	line, _ := json.Marshal(v)
	if _, err := fmt.Fprintf(b.in, "%s\n", line); err != nil {
		t.Fatalf("send to the browser script: %v", err)
	}
}

// next reads the script's next result: a scenario's, or a step's.
func (b *browser) next(t *testing.T) browserResult {
	t.Helper()
	if !b.out.Scan() {
		t.Fatalf("the browser script ended: %v", b.out.Err())
	}
	var r browserResult
	if err := json.Unmarshal(b.out.Bytes(), &r); err != nil {
		t.Fatalf("browser result %q: %v", b.out.Text(), err)
	}
	if r.Error != "" {
		t.Fatalf("scenario %s: %s", r.Name, r.Error)
	}
	return r
}

// startBrowser starts the script with Debian's Chromium; both must be installed (make test
// does), else the test skips locally and fails in CI.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	return startBrowserScript(t, "../../zendesk-app", "sidebar.e2e.mjs")
}

// startBrowserScript starts dir/e2e/script, a Playwright script of the npm package in dir,
// with Debian's Chromium; both must be installed, as for startBrowser.
func startBrowserScript(t *testing.T, dir, script string) *browser {
	t.Helper()
	app, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	chromium := os.Getenv("ZENKLAV_CHROMIUM")
	if chromium == "" {
		chromium, _ = exec.LookPath("chromium")
	}
	_, npmErr := os.Stat(filepath.Join(app, "node_modules", "playwright-core"))
	if chromium == "" || npmErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the browser test needs Debian's chromium and %s/node_modules: run it through `make test`", filepath.Base(app))
		}
		t.Skipf("chromium or %s/node_modules missing: `make deps` installs them", filepath.Base(app))
	}
	cmd := exec.Command("node", filepath.Join(app, "e2e", script))
	cmd.Dir = app
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }() //nolint:errcheck
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill() //nolint:errcheck
		}
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 4<<20)
	return &browser{in: in, out: sc}
}

// TestSidebarInBrowser loads the real sidebar page in headless Chromium from the Zendesk
// simulator's ticket view, which plays Zendesk's side of the ZAF handshake, against a
// backend wired as `zenklav all` wires it (sandbox mode's simulators and connection,
// ClickHouse for the support history), and checks what the agent sees in each state.
// Screenshots land in zendesk-app/e2e/screenshots/.
func TestSidebarInBrowser(t *testing.T) {
	b := startBrowser(t)
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)

	// The env `zenklav all` builds the sidebar from, in sandbox mode, with a store of the
	// test's own.
	e, err := newEnv(func(string) string { return "" }, io.Discard, envOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	e.sandboxOK = true
	store, _ := analyticstest.Open(t)
	e.store = store
	conns, err := e.connections(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	sb := e.sandbox
	side, err := e.newSidebar(ctx, conns)
	if err != nil {
		t.Fatal(err)
	}
	reg := e.registry
	srv, err := backend.New(logger, backend.Options{Registry: reg, Sidebar: side})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	sb.finish(ts.URL)

	ana, liam, sms := sb.sample.Customers[0], sb.sample.Customers[1], sb.sample.Customers[2]
	anaTicket, liamTicket, smsTicket := sb.sample.Tickets[0], sb.sample.Tickets[1], sb.sample.Tickets[2]
	// Ana's support history: the open ticket she is asking about, and one closed last week.
	closedAt := time.Now().UTC().AddDate(0, 0, -7).Truncate(time.Second)
	history := []schemas.TicketEvent{
		ticketEvent(anaTicket, ana.ID, schemas.TicketCreated, zenklav.StatusNew, time.Now().UTC().AddDate(0, 0, -1)),
		ticketEvent(sb.sample.Tickets[3], ana.ID, schemas.TicketCreated, zenklav.StatusNew, closedAt.AddDate(0, 0, -2)),
		ticketEvent(sb.sample.Tickets[3], ana.ID, schemas.TicketStatusChanged, zenklav.StatusClosed, closedAt),
	}
	if err := store.InsertTicketEvents(ctx, history); err != nil {
		t.Fatal(err)
	}
	anaID, _ := sb.klaviyo.ProfileID(sandboxKlaviyoKey, ana.Email)

	shots, err := filepath.Abs("../../zendesk-app/e2e/screenshots")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	page := func(ticket int64, query string) string {
		return fmt.Sprintf("%s/agent/tickets/%d?%s", sb.url, ticket, query)
	}
	scenario := func(t *testing.T, name, url, state, scheme string) browserResult {
		t.Helper()
		r := b.run(t, map[string]any{"name": name, "url": url, "state": state, "colorScheme": scheme, "screenshot": filepath.Join(shots, name+".png")})
		t.Logf("%s: first render %d ms, text:\n%s", name, r.FirstRenderMs, r.Text)
		if state == "error" {
			// The browser logs the failed request the scenario is about (the card's 503, the
			// refused page's 401); nothing else.
			r.ConsoleErrors = slices.DeleteFunc(r.ConsoleErrors, func(m string) bool {
				return m == "Failed to load resource: the server responded with a status of 503 (Service Unavailable)" ||
					m == "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
			})
		}
		if len(r.ConsoleErrors) > 0 {
			t.Errorf("%s: errors in the browser console: %q (failed requests: %q)", name, r.ConsoleErrors, r.FailedRequests)
		}
		if len(r.Host.Rejected) > 0 {
			t.Errorf("%s: the host refused the app's messages: %v", name, r.Host.Rejected)
		}
		return r
	}
	contains := func(t *testing.T, r browserResult, want ...string) {
		t.Helper()
		for _, w := range want {
			// Headings are upper case by CSS, and innerText reads what is shown.
			if !strings.Contains(strings.ToLower(r.Text), strings.ToLower(w)) {
				t.Errorf("%s: the agent does not see %q", r.Name, w)
			}
		}
	}
	link := func(t *testing.T, r browserResult, href string) {
		t.Helper()
		i := slices.IndexFunc(r.Links, func(l struct{ Href, Target, Rel, Text string }) bool { return l.Href == href })
		if i < 0 {
			t.Errorf("%s: no link to %s in %+v", r.Name, href, r.Links)
			return
		}
		if l := r.Links[i]; l.Target != "_blank" || !strings.Contains(l.Rel, "noopener") {
			t.Errorf("%s: link %s opens with target %q rel %q, want a new tab without opener", r.Name, href, l.Target, l.Rel)
		}
	}

	t.Run("found", func(t *testing.T) {
		r := scenario(t, "found", page(anaTicket.ID, "locale=en-US&theme=light"), "found", "light")
		contains(t, r, "Ana Souza", "ana.souza@example.com", "Lisbon", "Subscribed", "Unsubscribed",
			"VIP customers", "Outdoor enthusiasts", "Newsletter", "Back in stock alerts", "Placed Order", "129.9", "Viewed Product",
			"Open tickets", "Cancel my subscription box")
		link(t, r, "https://www.klaviyo.com/profile/"+anaID)
		if r.Theme != "light" || r.Lang != "en" {
			t.Errorf("theme %q, lang %q; want light, en", r.Theme, r.Lang)
		}
		if r.Host.LastResize == nil || r.Host.IframeHeight < 300 {
			t.Errorf("the app did not size the sidebar to its card: resize %+v, iframe %v px", r.Host.LastResize, r.Host.IframeHeight)
		}
		for _, s := range []string{"profile", "consent", "predictions", "activity", "segments", "lists", "support"} {
			if !slices.Contains(r.Sections, s) {
				t.Errorf("section %s missing: %v", s, r.Sections)
			}
		}
	})

	t.Run("spanish dark", func(t *testing.T) {
		r := scenario(t, "found-es-dark", page(anaTicket.ID, "locale=es&theme=dark"), "found", "dark")
		contains(t, r, "Ana Souza", "Suscrito", "Dado de baja", "Segmentos", "Tickets abiertos", "Abrir en Klaviyo")
		if r.Theme != "dark" || r.Lang != "es" {
			t.Errorf("theme %q, lang %q; want dark, es", r.Theme, r.Lang)
		}
		if !darkColor(r.Background) {
			t.Errorf("background %s is not dark in Zendesk's dark theme", r.Background)
		}
	})

	t.Run("new ticket", func(t *testing.T) {
		r := scenario(t, "new-ticket", page(anaTicket.ID, "new=1"), "found", "light")
		contains(t, r, "Ana Souza", "VIP customers")
	})

	t.Run("empty", func(t *testing.T) {
		r := scenario(t, "empty", page(liamTicket.ID, ""), "empty", "light")
		contains(t, r, liam.Name, "No Klaviyo profile")
		link(t, r, "https://www.klaviyo.com/profiles")
	})

	t.Run("partial", func(t *testing.T) {
		sb.klaviyo.SetProfileDetails(sandboxKlaviyoKey, sms.Phone, klaviyotest.ProfileDetails{FirstName: "Sam", Segments: []string{"SMS VIPs"}, Lists: []string{"SMS list"}})
		sb.klaviyo.SetOperationFault("get_segments_for_profile", http.StatusServiceUnavailable, 1)
		defer sb.klaviyo.SetOperationFault("get_segments_for_profile", 0, 0)
		r := scenario(t, "partial", page(smsTicket.ID, ""), "partial", "light")
		contains(t, r, "Klaviyo is slow or not answering", "segments", "SMS list", "Retry")
		if strings.Contains(r.Text, "SMS VIPs") {
			t.Error("the failed segments are shown")
		}
	})

	t.Run("requester changed, then saved", func(t *testing.T) {
		b.send(t, map[string]any{
			"name": "requester-changed", "url": page(anaTicket.ID, ""), "state": "found",
			"steps": []map[string]any{
				// The agent picks another requester: until the ticket is saved, the card stays
				// the saved requester's and says so.
				{"host": fmt.Sprintf(`zafHost.data.ticket.requester = Object.assign({}, zafHost.data.ticket.requester, {id: %d, name: %q, email: %q, phone: null, identities: []});
					zafHost.trigger('ticket.requester.id.changed', %d)`, liam.ID, liam.Name, liam.Email, liam.ID),
					"until":      map[string]string{"state": "found", "testid": "requester-changed"},
					"screenshot": filepath.Join(shots, "requester-changed.png")},
				// Saved: Zendesk's ticket names Liam, who has no Klaviyo profile.
				{"await": true, "host": `zafHost.trigger('ticket.saved')`, "until": map[string]string{"state": "empty"}},
			},
		})
		first := b.next(t)
		contains(t, first, "Ana Souza", "VIP customers")
		changed := b.next(t)
		contains(t, changed, "save the ticket", "Ana Souza")
		if _, err := sb.sim.UpdateTicket(anaTicket.ID, func(tk *zendesk.Ticket) { tk.RequesterID = liam.ID }); err != nil {
			t.Fatal(err)
		}
		defer sb.sim.UpdateTicket(anaTicket.ID, func(tk *zendesk.Ticket) { tk.RequesterID = ana.ID }) //nolint:errcheck
		b.send(t, map[string]any{"continue": true})
		saved := b.next(t)
		contains(t, saved, liam.Name, "No Klaviyo profile")
		if strings.Contains(saved.Text, "save the ticket") {
			t.Error("the saved ticket still says to save it")
		}
	})

	t.Run("loading", func(t *testing.T) {
		u := sb.sim.AddUser(zendesk.User{Name: "Noor Haddad", Email: "noor@example.com", Role: "end-user"})
		tk := sb.sim.AddTicket(zendesk.Ticket{Subject: "Gift card balance", Status: "open", RequesterID: u.ID})
		sb.klaviyo.SetProfileDetails(sandboxKlaviyoKey, u.Email, klaviyotest.ProfileDetails{FirstName: "Noor"})
		sb.klaviyo.SetLatency(3 * time.Second)
		defer sb.klaviyo.SetLatency(0)
		r := scenario(t, "loading", page(tk.ID, ""), "loading", "light")
		contains(t, r, "Loading Klaviyo profile", "Noor Haddad")
	})

	t.Run("error", func(t *testing.T) {
		// Zendesk refuses zenklav's API token (revoked): the card cannot be built.
		u := sb.sim.AddUser(zendesk.User{Name: "Omar Diaz", Email: "omar@example.com", Role: "end-user"})
		tk := sb.sim.AddTicket(zendesk.Ticket{Subject: "Damaged parcel", Status: "open", RequesterID: u.ID})
		sb.sim.SetCredentials("someone@else.example", "another-token")
		defer sb.sim.SetCredentials(zendesktest.DefaultEmail, zendesktest.DefaultAPIToken)
		r := scenario(t, "error", page(tk.ID, ""), "error", "light")
		contains(t, r, "Omar Diaz", "Zendesk or Klaviyo is not answering zenklav right now", "Details: Zendesk did not answer", "Retry")
		if len(r.FailedRequests) != 1 || !strings.Contains(r.FailedRequests[0], "503 GET") {
			t.Errorf("failed requests %q, want the card's 503", r.FailedRequests)
		}
	})

	// First render, as the agent meets it: from opening the ticket view to the card, the
	// card warm as for the agent's colleagues. Logged for make bench, not asserted.
	if n, _ := strconv.Atoi(os.Getenv("ZENKLAV_BENCH_RENDERS")); n > 0 {
		var ms []int
		for i := range n {
			r := b.run(t, map[string]any{"name": fmt.Sprintf("render-%d", i), "url": page(anaTicket.ID, ""), "state": "found"})
			ms = append(ms, r.FirstRenderMs)
		}
		slices.Sort(ms)
		fmt.Printf("| sidebar first render, headless Chromium | %d loads of the ticket view until the card shows (ZAF handshake, signed-URL page, card) | — | p50 %d ms, p95 %d ms, max %d ms |\n",
			n, ms[n/2], ms[min(n-1, n*95/100)], ms[n-1])
	}

	// Last, as it replaces the app's key for good: Zendesk's token signed with a key the
	// connection does not hold shows the refusal page, in the sidebar, without a session.
	t.Run("refused", func(t *testing.T) {
		if err := sb.sim.InstallApp(zendesktest.AppInstallation{Subdomain: sandboxSubdomain, InstallationID: sandboxInstallation, URL: ts.URL + "/app/sidebar"}); err != nil {
			t.Fatal(err)
		}
		r := scenario(t, "refused", page(anaTicket.ID, "theme=dark"), "error", "dark")
		contains(t, r, "The Klaviyo profile cannot be shown", "not signed with the expected key")
		if strings.Contains(r.Text, "Ana Souza") {
			t.Error("the refusal shows the customer")
		}
		if !darkColor(r.Background) {
			t.Errorf("the refusal page ignores Zendesk's dark theme: background %s", r.Background)
		}
	})
}

// darkColor says whether a CSS rgb() colour is dark.
func darkColor(css string) bool {
	var r, g, b int
	if _, err := fmt.Sscanf(strings.ReplaceAll(css, " ", ""), "rgb(%d,%d,%d)", &r, &g, &b); err != nil {
		return false
	}
	return r+g+b < 3*100
}

// ticketEvent is an event of a sandbox ticket as the sink stores it.
func ticketEvent(t zendesk.Ticket, requester int64, typ, status string, at time.Time) schemas.TicketEvent {
	return schemas.TicketEvent{
		EventID: fmt.Sprintf("%d-%s-%s", t.ID, typ, status), Connection: sandboxSubdomain,
		Account: schemas.Account{Subdomain: sandboxSubdomain}, Type: typ, Source: schemas.SourceEvent,
		OccurredAt: at, ReceivedAt: at,
		Ticket: schemas.Ticket{ID: t.ID, Subject: t.Subject, Status: status, Requester: schemas.Requester{ID: requester}},
	}
}
