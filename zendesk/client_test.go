package zendesk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

func newClient(t *testing.T, baseURL string) *zendesk.Client {
	t.Helper()
	c, err := zendesk.NewClient(slog.New(slog.DiscardHandler), zendesk.ClientConfig{
		BaseURL:  baseURL,
		Email:    zendesktest.DefaultEmail,
		APIToken: zendesktest.DefaultAPIToken,
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// newSim starts a simulator that fails the test on any request that breaks Zendesk's spec.
func newSim(t *testing.T) *zendesktest.Server {
	t.Helper()
	sim := zendesktest.NewServer()
	t.Cleanup(func() {
		sim.Close()
		sim.AssertNoViolations(t)
	})
	return sim
}

func TestClientReads(t *testing.T) {
	sim := newSim(t)
	c := newClient(t, sim.URL)
	ctx := context.Background()

	brand := sim.AddBrand(zendesk.Brand{Name: "Acme", Subdomain: "acme", BrandURL: "https://acme.zendesk.com", Active: true})
	group := sim.AddGroup(zendesk.Group{Name: "Tier 1"})
	agent := sim.AddUser(zendesk.User{Name: "Agent Smith", Email: "smith@acme.example.com", Role: "agent"})
	customer := sim.AddUser(zendesk.User{Name: "Jo Customer", Email: "jo@example.com", Phone: "+15555550123"})
	created := time.Date(2025, 1, 8, 10, 12, 7, 0, time.UTC)
	ticket := sim.AddTicket(zendesk.Ticket{
		Subject:      "Where is my order?",
		Description:  "It has not arrived.",
		Status:       "open",
		Priority:     "high",
		Type:         "question",
		Tags:         []string{"shipping", "vip"},
		Via:          zendesk.Via{Channel: "email"},
		RequesterID:  customer.ID,
		AssigneeID:   agent.ID,
		GroupID:      group.ID,
		BrandID:      brand.ID,
		CustomFields: []zendesk.CustomField{{ID: 360001, Value: "exchange"}},
		CreatedAt:    created,
		UpdatedAt:    created.Add(time.Hour),
	})
	unassigned := sim.AddTicket(zendesk.Ticket{Subject: "Hi", RequesterID: customer.ID, CreatedAt: created})

	tests := []struct {
		name string
		call func() (any, error)
		want any
	}{
		{
			name: "ticket",
			call: func() (any, error) { return c.ShowTicket(ctx, ticket.ID) },
			want: zendesk.Ticket{
				ID: ticket.ID, URL: fmt.Sprintf("%s/api/v2/tickets/%d.json", sim.URL, ticket.ID),
				Subject: "Where is my order?", Description: "It has not arrived.",
				Status: "open", Priority: "high", Type: "question", Tags: []string{"shipping", "vip"},
				Via: zendesk.Via{Channel: "email"}, RequesterID: customer.ID, AssigneeID: agent.ID,
				GroupID: group.ID, BrandID: brand.ID,
				CustomFields: []zendesk.CustomField{{ID: 360001, Value: "exchange"}},
				CreatedAt:    created, UpdatedAt: created.Add(time.Hour),
			},
		},
		{
			name: "ticket without assignee, priority or type",
			call: func() (any, error) { return c.ShowTicket(ctx, unassigned.ID) },
			want: zendesk.Ticket{
				ID: unassigned.ID, URL: fmt.Sprintf("%s/api/v2/tickets/%d.json", sim.URL, unassigned.ID),
				Subject: "Hi", Status: "new", Tags: []string{}, Via: zendesk.Via{Channel: "web"},
				RequesterID: customer.ID, CustomFields: []zendesk.CustomField{}, CreatedAt: created, UpdatedAt: created,
			},
		},
		{
			name: "user",
			call: func() (any, error) { return c.User(ctx, customer.ID) },
			want: zendesk.User{ID: customer.ID, Name: "Jo Customer", Email: "jo@example.com", Phone: "+15555550123", Role: "end-user"},
		},
		{
			name: "user without phone",
			call: func() (any, error) { return c.User(ctx, agent.ID) },
			want: zendesk.User{ID: agent.ID, Name: "Agent Smith", Email: "smith@acme.example.com", Role: "agent"},
		},
		{
			name: "users many leaves out unknown ids",
			call: func() (any, error) { return c.UsersMany(ctx, []int64{agent.ID, 999, customer.ID}) },
			want: []zendesk.User{
				{ID: agent.ID, Name: "Agent Smith", Email: "smith@acme.example.com", Role: "agent"},
				{ID: customer.ID, Name: "Jo Customer", Email: "jo@example.com", Phone: "+15555550123", Role: "end-user"},
			},
		},
		{
			name: "users many of nothing calls nothing",
			call: func() (any, error) { return c.UsersMany(ctx, nil) },
			want: []zendesk.User(nil),
		},
		{
			name: "group",
			call: func() (any, error) { return c.Group(ctx, group.ID) },
			want: zendesk.Group{ID: group.ID, Name: "Tier 1"},
		},
		{
			name: "brands",
			call: func() (any, error) { return c.Brands(ctx) },
			want: []zenklav.Brand{{ID: brand.ID, Name: "Acme", Default: true, Active: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestClientErrors(t *testing.T) {
	sim := newSim(t)
	ctx := context.Background()
	good := newClient(t, sim.URL)
	wrongToken, err := zendesk.NewClient(slog.New(slog.DiscardHandler), zendesk.ClientConfig{
		BaseURL: sim.URL, Email: zendesktest.DefaultEmail, APIToken: "not-the-token",
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := zendesktest.NewServer()
	closed.Close()
	unreachable := newClient(t, closed.URL)

	tests := []struct {
		name string
		call func() error
		kind string
	}{
		{"ticket not found", func() error { _, err := good.ShowTicket(ctx, 404404); return err }, zenklav.ENOTFOUND},
		{"user not found", func() error { _, err := good.User(ctx, 404404); return err }, zenklav.ENOTFOUND},
		{"group not found", func() error { _, err := good.Group(ctx, 404404); return err }, zenklav.ENOTFOUND},
		{"bad credentials on ticket", func() error { _, err := wrongToken.ShowTicket(ctx, 1); return err }, zenklav.EUNAUTHORIZED},
		{"bad credentials on users many", func() error { _, err := wrongToken.UsersMany(ctx, []int64{1}); return err }, zenklav.EUNAUTHORIZED},
		{"bad credentials on brands", func() error { _, err := wrongToken.Brands(ctx); return err }, zenklav.EUNAUTHORIZED},
		{"server down", func() error { _, err := unreachable.Group(ctx, 1); return err }, zenklav.EUNAVAILABLE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if got := zenklav.ErrorCode(err); got != tt.kind {
				t.Errorf("kind = %q, want %q (err %v)", got, tt.kind, err)
			}
		})
	}
}

func TestClientRateLimited(t *testing.T) {
	sim := newSim(t)
	sim.SetRateLimit(1)
	now := time.Date(2025, 1, 8, 10, 0, 0, 0, time.UTC)
	sim.SetClock(func() time.Time { return now })
	c := newClient(t, sim.URL)
	g := sim.AddGroup(zendesk.Group{Name: "Tier 1"})

	if _, err := c.Group(context.Background(), g.ID); err != nil {
		t.Fatalf("first call: %v", err)
	}
	now = now.Add(15 * time.Second)
	_, err := c.Group(context.Background(), g.ID)
	if got := zenklav.ErrorCode(err); got != zenklav.EUNAVAILABLE {
		t.Fatalf("kind = %q, want %q (err %v)", got, zenklav.EUNAVAILABLE, err)
	}
	if got, want := zenklav.RetryAfter(err), 45*time.Second; got != want {
		t.Errorf("RetryAfter = %s, want %s", got, want)
	}
	var apiErr *zendesk.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests {
		t.Errorf("err = %v, want an APIError with status 429", err)
	}
}

// TestClientStatusKinds covers answers the simulator has no reason to give.
func TestClientStatusKinds(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		header      http.Header
		body        string
		kind        string
		retryAfter  time.Duration
		code, descr string
	}{
		{name: "not found", status: 404, body: `{"error":"RecordNotFound","description":"Not found"}`, kind: zenklav.ENOTFOUND, code: "RecordNotFound", descr: "Not found"},
		{name: "unauthorized", status: 401, body: `{"error":"Couldn't authenticate you"}`, kind: zenklav.EUNAUTHORIZED, code: "Couldn't authenticate you"},
		{name: "forbidden", status: 403, body: `{"error":{"title":"Forbidden","message":"You do not have access to this page."}}`, kind: zenklav.EUNAUTHORIZED, code: "Forbidden", descr: "You do not have access to this page."},
		{name: "too many requests", status: 429, header: http.Header{"Retry-After": {"93"}}, body: `{"errors":[{"code":"TooManyRequests","title":"Too many requests to update"}]}`, kind: zenklav.EUNAVAILABLE, retryAfter: 93 * time.Second, code: "TooManyRequests", descr: "Too many requests to update"},
		{name: "unavailable with retry after", status: 503, header: http.Header{"Retry-After": {"7"}}, body: `maintenance`, kind: zenklav.EUNAVAILABLE, retryAfter: 7 * time.Second},
		{name: "server error", status: 500, body: `{"error":"InternalError"}`, kind: zenklav.EUNAVAILABLE, code: "InternalError"},
		{name: "bad request", status: 400, body: `{"error":"InvalidPaginationParameter","description":"bad size"}`, kind: zenklav.EINVALID, code: "InvalidPaginationParameter", descr: "bad size"},
		{name: "unprocessable", status: 422, body: `{"error":"RecordInvalid","description":"Record validation errors"}`, kind: zenklav.EINVALID, code: "RecordInvalid", descr: "Record validation errors"},
		{name: "not json on success", status: 200, body: `<html>proxy</html>`, kind: zenklav.EUNAVAILABLE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			_, err := newClient(t, srv.URL).ShowTicket(context.Background(), 1)
			if got := zenklav.ErrorCode(err); got != tt.kind {
				t.Fatalf("kind = %q, want %q (err %v)", got, tt.kind, err)
			}
			if got := zenklav.RetryAfter(err); got != tt.retryAfter {
				t.Errorf("RetryAfter = %s, want %s", got, tt.retryAfter)
			}
			var apiErr *zendesk.APIError
			if tt.status >= 300 {
				if !errors.As(err, &apiErr) {
					t.Fatalf("err = %v, want an APIError in the chain", err)
				}
				if apiErr.StatusCode != tt.status || apiErr.Code != tt.code || apiErr.Description != tt.descr {
					t.Errorf("APIError = %+v, want status %d code %q description %q", apiErr, tt.status, tt.code, tt.descr)
				}
			}
		})
	}
}

func TestClientTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, err := zendesk.NewClient(slog.New(slog.DiscardHandler), zendesk.ClientConfig{
		BaseURL: srv.URL, Email: "a@example.com", APIToken: "t", Timeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ShowTicket(context.Background(), 1)
	if got := zenklav.ErrorCode(err); got != zenklav.EUNAVAILABLE {
		t.Errorf("kind = %q, want %q (err %v)", got, zenklav.EUNAVAILABLE, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded in the chain", err)
	}
}

func TestClientPaginates(t *testing.T) {
	sim := newSim(t)
	c := newClient(t, sim.URL)
	var wantBrands []zenklav.Brand
	for i := range 230 {
		b := sim.AddBrand(zendesk.Brand{Name: fmt.Sprintf("Brand %03d", i), Subdomain: fmt.Sprintf("b%03d", i), Active: i%2 == 0})
		wantBrands = append(wantBrands, zenklav.Brand{ID: b.ID, Name: b.Name, Default: i == 0, Active: b.Active})
	}
	var ids []int64
	var wantUsers []zendesk.User
	for i := range 250 {
		u := sim.AddUser(zendesk.User{Name: fmt.Sprintf("User %d", i), Email: fmt.Sprintf("u%d@example.com", i)})
		ids = append(ids, u.ID)
		wantUsers = append(wantUsers, u)
	}

	brands, err := c.Brands(context.Background())
	if err != nil {
		t.Fatalf("Brands: %v", err)
	}
	if !reflect.DeepEqual(brands, wantBrands) {
		t.Errorf("Brands returned %d brands, want the %d stored, sorted by name", len(brands), len(wantBrands))
	}
	users, err := c.UsersMany(context.Background(), ids)
	if err != nil {
		t.Fatalf("UsersMany: %v", err)
	}
	if !reflect.DeepEqual(users, wantUsers) {
		t.Errorf("UsersMany returned %d users, want the %d stored", len(users), len(wantUsers))
	}
}

func TestClientFollowsOnlyOwnHost(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page[after]") == "" {
			// Zendesk names the account's own host in its links; the client must keep
			// talking to the configured base, and send the credentials nowhere else.
			fmt.Fprint(w, `{"brands":[{"id":1,"name":"A","subdomain":"a"}],"meta":{"has_more":true},"links":{"next":"https://elsewhere.example.com/api/v2/brands.json?page%5Bafter%5D=x&page%5Bsize%5D=100"}}`)
			return
		}
		if r.Host != strings.TrimPrefix(srv.URL, "http://") {
			t.Errorf("second page went to %s", r.Host)
		}
		fmt.Fprint(w, `{"brands":[{"id":2,"name":"B","subdomain":"b"}],"meta":{"has_more":false},"links":{"next":"https://elsewhere.example.com/api/v2/brands.json?page%5Bafter%5D=y"}}`)
	}))
	defer srv.Close()
	brands, err := newClient(t, srv.URL).Brands(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(brands) != 2 || brands[1].ID != 2 {
		t.Errorf("brands = %+v, want brands 1 and 2", brands)
	}
}

func TestNewClientConfig(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	tests := []struct {
		name   string
		logger *slog.Logger
		cfg    zendesk.ClientConfig
		ok     bool
	}{
		{"complete", logger, zendesk.ClientConfig{BaseURL: "https://acme.zendesk.com/", Email: "a@example.com", APIToken: "t"}, true},
		{"no logger", nil, zendesk.ClientConfig{BaseURL: "https://acme.zendesk.com", Email: "a@example.com", APIToken: "t"}, false},
		{"no base url", logger, zendesk.ClientConfig{Email: "a@example.com", APIToken: "t"}, false},
		{"not http", logger, zendesk.ClientConfig{BaseURL: "ftp://acme.zendesk.com", Email: "a@example.com", APIToken: "t"}, false},
		{"credentials in url", logger, zendesk.ClientConfig{BaseURL: "https://a%40example.com%2Ftoken:t@acme.zendesk.com", Email: "a@example.com", APIToken: "t"}, false},
		{"no email", logger, zendesk.ClientConfig{BaseURL: "https://acme.zendesk.com", APIToken: "t"}, false},
		{"no token", logger, zendesk.ClientConfig{BaseURL: "https://acme.zendesk.com", Email: "a@example.com"}, false},
		{"negative timeout", logger, zendesk.ClientConfig{BaseURL: "https://acme.zendesk.com", Email: "a@example.com", APIToken: "t", Timeout: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := zendesk.NewClient(tt.logger, tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && zenklav.ErrorCode(err) != zenklav.EINVALID {
				t.Errorf("kind = %q, want %q", zenklav.ErrorCode(err), zenklav.EINVALID)
			}
		})
	}
}

func TestClientNeverLogsToken(t *testing.T) {
	const token = "s3cr3t-api-token-value"
	sim := newSim(t)
	sim.SetCredentials("ops@example.com", token)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := zendesk.ClientConfig{BaseURL: sim.URL, Email: "ops@example.com", APIToken: token}
	c, err := zendesk.NewClient(logger, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, errFound := c.ShowTicket(context.Background(), 1)
	bad, _ := zendesk.NewClient(logger, zendesk.ClientConfig{BaseURL: sim.URL, Email: "ops@example.com", APIToken: token + "x"})
	_, errAuth := bad.User(context.Background(), 1)
	logger.Info("config", "cfg", cfg)

	for name, text := range map[string]string{
		"logs":            logs.String(),
		"config %v":       fmt.Sprintf("%v", cfg),
		"config %+v":      fmt.Sprintf("%+v", cfg),
		"config %#v":      fmt.Sprintf("%#v", cfg),
		"not found error": errFound.Error(),
		"auth error":      errAuth.Error(),
	} {
		if strings.Contains(text, token) {
			t.Errorf("%s contain the token: %s", name, text)
		}
	}
	if !strings.Contains(logs.String(), "zendesk call") {
		t.Errorf("logs = %s, want the calls logged at debug", logs.String())
	}
}

// TestClientDecodesRealNulls feeds the client a ticket as Zendesk really sends it, with
// the nulls and non-string custom field values its spec does not allow (so the simulator,
// which keeps to the spec, never sends them).
func TestClientDecodesRealNulls(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"ticket":{"id":5158,"url":"https://acme.zendesk.com/api/v2/tickets/5158.json","subject":"Hi","description":"Hello",
			"status":"new","priority":null,"type":null,"tags":[],"via":{"channel":"sms","source":{"from":{},"to":{},"rel":null}},
			"requester_id":8447388090494,"assignee_id":null,"group_id":null,"brand_id":8447346621310,
			"custom_fields":[{"id":1,"value":null},{"id":2,"value":true},{"id":3,"value":12.5},{"id":4,"value":["a","b"]}],
			"created_at":"2025-01-08T10:12:07Z","updated_at":"2025-01-08T10:12:07Z"}}`)
	}))
	defer srv.Close()
	got, err := newClient(t, srv.URL).ShowTicket(context.Background(), 5158)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 1, 8, 10, 12, 7, 0, time.UTC)
	want := zendesk.Ticket{
		ID: 5158, URL: "https://acme.zendesk.com/api/v2/tickets/5158.json", Subject: "Hi", Description: "Hello",
		Status: "new", Tags: []string{}, Via: zendesk.Via{Channel: "sms"}, RequesterID: 8447388090494, BrandID: 8447346621310,
		CustomFields: []zendesk.CustomField{{ID: 1, Value: nil}, {ID: 2, Value: true}, {ID: 3, Value: 12.5}, {ID: 4, Value: []any{"a", "b"}}},
		CreatedAt:    at, UpdatedAt: at,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
