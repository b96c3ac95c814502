package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/zendesk"
)

// sidebarCards measures the sidebar's profile card through `zenklav api`: cold (each card
// asked for the first time, every Klaviyo call answered after -latency) and warm (the same
// cards again within the cache's minute). Each connection is its own Klaviyo account, and
// cold cards are paced under the account's tightest limit (a profile's segments and lists,
// 3/s and 60/min), so what is measured is the card, not a wait for a rate limit.
func sidebarCards(args []string) error {
	fs := flag.NewFlagSet("sidebar", flag.ExitOnError)
	bin := fs.String("zenklav", "bin/zenklav", "the zenklav binary")
	brokers := fs.String("brokers", "", "Kafka brokers")
	ch := fs.String("clickhouse", "", "ClickHouse native address")
	database := fs.String("database", "bench_sidebar", "zenklav's ClickHouse database")
	httpAddr := fs.String("http", "127.0.0.1:18093", "zenklav's HTTP listener")
	accounts := fs.Int("accounts", 10, "connections, each with its own Klaviyo account")
	cards := fs.Int("cards", 200, "cold cards, each a ticket of a requester of its own")
	warm := fs.Int("warm", 10, "warm requests per card")
	kLatency := fs.Duration("latency", 50*time.Millisecond, "the Klaviyo simulator's answer time per call")
	fs.Parse(args)
	if *brokers == "" || *ch == "" || *accounts < 1 || *cards < 1 {
		return fmt.Errorf("sidebar needs -brokers, -clickhouse, -accounts ≥ 1 and -cards ≥ 1")
	}
	ctx, logger, _, dir, s, done, err := prepare("sidebar", *brokers)
	if err != nil {
		return err
	}
	defer done()
	s.zendesk.SetRateLimit(1_000_000) // Zendesk's plan limit is not what is measured

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	publicPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	run := time.Now().Unix()
	conns := make([]benchConnection, *accounts)
	for i := range conns {
		conns[i] = benchConnection{
			id: fmt.Sprintf("sidebar%d", i), secret: "sidebar-webhook-signing-secret",
			klaviyoKey:   fmt.Sprintf("pk_sidebar_%d_%d", run, i),
			installation: int64(i + 1), publicKey: publicPEM,
		}
		s.klaviyo.AddAccount(conns[i].klaviyoKey)
	}
	connsFile := filepath.Join(dir, "connections.json")
	if err := writeConnections(connsFile, conns); err != nil {
		return err
	}

	// Every requester has a full profile: consent, predictions, two segments, two lists and
	// three events, so a cold card makes all four Klaviyo calls.
	type card struct {
		conn   int
		ticket int64
	}
	all := make([]card, *cards)
	var seed = map[int][]klaviyo.Event{}
	for j := range all {
		c := j % *accounts
		email := fmt.Sprintf("sidebar-customer%d@example.com", j)
		u := s.zendesk.AddUser(zendesk.User{Name: fmt.Sprintf("Customer %d", j), Email: email, Role: "end-user"})
		t := s.zendesk.AddTicket(zendesk.Ticket{Subject: "Where is my order?", Status: "open", Via: zendesk.Via{Channel: "email"}, RequesterID: u.ID})
		all[j] = card{conn: c, ticket: t.ID}
		clv, churn := 250.0+float64(j), 0.2
		s.klaviyo.SetProfileDetails(conns[c].klaviyoKey, email, klaviyotest.ProfileDetails{
			FirstName: "Customer", LastName: fmt.Sprint(j),
			EmailConsent: &klaviyo.Consent{Consent: "SUBSCRIBED", CanReceive: true, Timestamp: time.Now().AddDate(-1, 0, 0)},
			Predictive:   &klaviyo.PredictiveAnalytics{PredictedCLV: &clv, ChurnProbability: &churn},
			Segments:     []string{"VIP customers", "Repeat buyers"}, Lists: []string{"Newsletter", "SMS subscribers"},
		})
		for k := range 3 {
			seed[c] = append(seed[c], klaviyo.Event{
				Metric: "Placed Order", Profile: klaviyo.Profile{Email: email}, Properties: map[string]any{"$value": 40.0 + float64(k)},
				Time: time.Now().AddDate(0, 0, -k-1), UniqueID: fmt.Sprintf("seed-%d-%d", j, k),
			})
		}
	}
	for c, events := range seed {
		kc, err := klaviyo.NewClient(logger, klaviyo.ClientConfig{BaseURL: s.klaviyoURL, PrivateKey: conns[c].klaviyoKey})
		if err != nil {
			return err
		}
		if errs := errorsOf(kc.Deliver(ctx, events)); errs != nil {
			return fmt.Errorf("seed events: %w", errs)
		}
	}
	s.klaviyo.SetLatency(*kLatency)

	env := s.env(*httpAddr, *brokers, *ch, *database, connsFile)
	env["ZENKLAV_JWT_SIGNING_KEY"] = "loadgen-sidebar-session-signing-key-0123456789"
	p, err := startZenklav(ctx, *bin, "api", dir, env)
	if err != nil {
		return err
	}
	defer p.stop()

	// A session per card, from the app page, as each ticket's sidebar gets one (a session
	// reads one ticket); opened before the clock starts.
	sessions := make([]string, len(all))
	for j, c := range all {
		if sessions[j], err = openSidebar(*httpAddr, s.zendeskURL, key, conns[c.conn]); err != nil {
			return err
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(j int) (time.Duration, bool, error) {
		c := all[j]
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/api/v1/sidebar/profile?ticket_id=%d", *httpAddr, c.ticket), nil)
		req.Header.Set("Authorization", "Bearer "+sessions[j])
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, false, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil || resp.StatusCode != http.StatusOK {
			return 0, false, fmt.Errorf("card of ticket %d: %d %s %v", c.ticket, resp.StatusCode, body, err)
		}
		var got struct {
			Klaviyo     string   `json:"klaviyo"`
			Unavailable []string `json:"unavailable"`
			Segments    []any    `json:"segments"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			return 0, false, err
		}
		complete := got.Klaviyo == "found" && len(got.Unavailable) == 0 && len(got.Segments) == 2
		return took, complete, nil
	}

	// Cold: one card every pace, round robin over the accounts, so each account asks for a
	// profile's segments under once a second.
	pace := 1100 * time.Millisecond / time.Duration(*accounts)
	var cold, hot []time.Duration
	partial := 0
	start := time.Now()
	for j := range all {
		time.Sleep(time.Until(start.Add(time.Duration(j) * pace)))
		d, complete, err := get(j)
		if err != nil {
			return err
		}
		cold = append(cold, d)
		if !complete {
			partial++
		}
		for range *warm {
			d, _, err := get(j)
			if err != nil {
				return err
			}
			hot = append(hot, d)
		}
	}
	q := func(ds []time.Duration, p float64) time.Duration {
		slices.Sort(ds)
		return ds[min(len(ds)-1, int(float64(len(ds))*p))]
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
	fmt.Printf("| sidebar card, cold, `zenklav api` | %d cards over %d Klaviyo accounts, each Klaviyo call answered after %s (4 calls, 2 rounds) | — | p50 %s, p95 %s, max %s; %d of %d partial; get_profiles %s |\n",
		len(cold), *accounts, *kLatency, ms(q(cold, .5)), ms(q(cold, .95)), ms(cold[len(cold)-1]), partial, len(cold), s.answers.get("/api/profiles"))
	fmt.Printf("| sidebar card, warm (cached) | %d requests, %d per card within its minute | — | p50 %s, p95 %s, max %s |\n",
		len(hot), *warm, ms(q(hot, .5)), ms(q(hot, .95)), ms(hot[len(hot)-1]))
	return nil
}

var sessionMeta = regexp.MustCompile(`name="zenklav-session" content="([^"]+)"`)

// openSidebar posts a Zendesk app token for conn's installation to the app page, as
// Zendesk does, and returns the session token the page carries.
func openSidebar(httpAddr, origin string, key *rsa.PrivateKey, c benchConnection) (string, error) {
	now := time.Now()
	token, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": c.id + ".zendesk.com",
		"aud": fmt.Sprintf("https://%s.zendesk.com/api/v2/apps/installations/%d.json", c.id, c.installation),
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}).SignedString(key)
	if err != nil {
		return "", err
	}
	q := url.Values{"origin": {origin}, "app_guid": {"loadgen"}}
	resp, err := http.PostForm("http://"+httpAddr+"/app/sidebar?"+q.Encode(), url.Values{"token": {token}})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := sessionMeta.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		return "", fmt.Errorf("app page for %s: %d %s", c.id, resp.StatusCode, body)
	}
	return string(m[1]), nil
}

func errorsOf(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
