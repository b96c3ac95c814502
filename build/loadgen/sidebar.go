package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
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
	var zf zenklavFlags
	zf.register(fs, "bench_sidebar", "127.0.0.1:18093")
	accounts := fs.Int("accounts", 10, "connections, each with its own Klaviyo account")
	cards := fs.Int("cards", 200, "cold cards, each a ticket of a requester of its own")
	warm := fs.Int("warm", 10, "warm requests per card")
	kLatency := fs.Duration("latency", 50*time.Millisecond, "the Klaviyo simulator's answer time per call")
	fs.Parse(args)
	if zf.brokers == "" || zf.clickhouse == "" || *accounts < 1 || *cards < 1 {
		return fmt.Errorf("sidebar needs -brokers, -clickhouse, -accounts ≥ 1 and -cards ≥ 1")
	}
	ctx, logger, _, dir, s, done, err := prepare("sidebar", zf.brokers)
	if err != nil {
		return err
	}
	defer done()
	s.zendesk.SetRateLimit(1_000_000) // Zendesk's plan limit is not what is measured

	key, publicPEM, err := appKey()
	if err != nil {
		return err
	}
	conns := sidebarConnections(*accounts, publicPEM)
	connsFile, err := s.addConnections(dir, conns)
	if err != nil {
		return err
	}
	all, seed := addCustomers(s, conns, *cards)
	if err := seedEvents(ctx, logger, s.klaviyoURL, conns, seed); err != nil {
		return err
	}
	s.klaviyo.SetLatency(*kLatency)

	env := s.env(zf, connsFile)
	env["ZENKLAV_JWT_SIGNING_KEY"] = "loadgen-sidebar-session-signing-key-0123456789"
	p, err := startZenklav(ctx, zf.bin, "api", dir, env)
	if err != nil {
		return err
	}
	defer p.stop()

	// A session per card, from the app page, as each ticket's sidebar gets one (a session
	// reads one ticket); opened before the clock starts.
	for j, c := range all {
		if all[j].session, err = openSidebar(zf.httpAddr, s.zendeskURL, key, conns[c.conn]); err != nil {
			return err
		}
	}
	cold, hot, partial, err := timeCards(ctx, zf.httpAddr, all, *accounts, *warm)
	if err != nil {
		return err
	}
	slices.Sort(cold)
	slices.Sort(hot)
	fmt.Printf("| sidebar card, cold, `zenklav api` | %d cards over %d Klaviyo accounts, each Klaviyo call answered after %s (4 calls, 2 rounds) | — | p50 %s, p95 %s, max %s; %d of %d partial; get_profiles %s |\n",
		len(cold), *accounts, *kLatency, ms(quantile(cold, .5)), ms(quantile(cold, .95)), ms(cold[len(cold)-1]), partial, len(cold), s.answers.get("/api/profiles"))
	fmt.Printf("| sidebar card, warm (cached) | %d requests, %d per card within its minute | — | p50 %s, p95 %s, max %s |\n",
		len(hot), *warm, ms(quantile(hot, .5)), ms(quantile(hot, .95)), ms(hot[len(hot)-1]))
	return nil
}

// appKey is the key pair of the sidebar app's installations: the private key signs the app
// tokens Zendesk would post, the public key (PEM) is the one zenklav checks them with.
func appKey() (*rsa.PrivateKey, string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, "", err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, "", err
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// sidebarConnections are accounts connections, each with a Klaviyo account of its own and
// the sidebar app installed.
func sidebarConnections(accounts int, publicPEM string) []benchConnection {
	run := time.Now().Unix()
	conns := make([]benchConnection, accounts)
	for i := range conns {
		conns[i] = benchConnection{
			id: fmt.Sprintf("sidebar%d", i), secret: "sidebar-webhook-signing-secret",
			klaviyoKey:   fmt.Sprintf("pk_sidebar_%d_%d", run, i),
			installation: int64(i + 1), publicKey: publicPEM,
		}
	}
	return conns
}

// sidebarCard is one card to ask for: a ticket of a connection, and the session its
// sidebar reads it with.
type sidebarCard struct {
	conn    int
	ticket  int64
	session string
}

// addCustomers adds n cards, round robin over conns: each a ticket in the Zendesk simulator
// of a requester of its own, with a profile in the connection's Klaviyo account. It returns
// the cards, and by connection the events that complete the profiles.
func addCustomers(s *sims, conns []benchConnection, n int) ([]sidebarCard, map[int][]klaviyo.Event) {
	// Every requester has a full profile: consent, predictions, two segments, two lists and
	// three events, so a cold card makes all four Klaviyo calls.
	all := make([]sidebarCard, n)
	var seed = map[int][]klaviyo.Event{}
	for j := range all {
		c := j % len(conns)
		email := fmt.Sprintf("sidebar-customer%d@example.com", j)
		u := s.zendesk.AddUser(zendesk.User{Name: fmt.Sprintf("Customer %d", j), Email: email, Role: "end-user"})
		t := s.zendesk.AddTicket(zendesk.Ticket{Subject: "Where is my order?", Status: "open", Via: zendesk.Via{Channel: "email"}, RequesterID: u.ID})
		all[j] = sidebarCard{conn: c, ticket: t.ID}
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
	return all, seed
}

// seedEvents delivers each connection's seed events to its account in the Klaviyo simulator
// at baseURL, through the Klaviyo client, as the emitter would have.
func seedEvents(ctx context.Context, logger *slog.Logger, baseURL string, conns []benchConnection, seed map[int][]klaviyo.Event) error {
	for c, events := range seed {
		kc, err := klaviyo.NewClient(logger, klaviyo.ClientConfig{BaseURL: baseURL, PrivateKey: conns[c].klaviyoKey})
		if err != nil {
			return err
		}
		if errs := errorsOf(kc.Deliver(ctx, events)); errs != nil {
			return fmt.Errorf("seed events: %w", errs)
		}
	}
	return nil
}

// timeCards asks for every card cold and then warm times over, and says how long each
// answer took and how many cold cards were partial.
func timeCards(ctx context.Context, httpAddr string, all []sidebarCard, accounts, warm int) (cold, hot []time.Duration, partial int, err error) {
	client := &http.Client{Timeout: 10 * time.Second}
	// Cold: one card every pace, round robin over the accounts, so each account asks for a
	// profile's segments under once a second.
	pace := 1100 * time.Millisecond / time.Duration(accounts)
	start := time.Now()
	for j, c := range all {
		time.Sleep(time.Until(start.Add(time.Duration(j) * pace)))
		d, complete, err := getCard(ctx, client, httpAddr, c)
		if err != nil {
			return nil, nil, 0, err
		}
		cold = append(cold, d)
		if !complete {
			partial++
		}
		for range warm {
			d, _, err := getCard(ctx, client, httpAddr, c)
			if err != nil {
				return nil, nil, 0, err
			}
			hot = append(hot, d)
		}
	}
	return cold, hot, partial, nil
}

// getCard asks zenklav api for c's profile card with c's session, and says how long the
// answer took and whether the card is complete: the profile found in Klaviyo, nothing
// unavailable, and both segments.
func getCard(ctx context.Context, client *http.Client, httpAddr string, c sidebarCard) (time.Duration, bool, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/api/v1/sidebar/profile?ticket_id=%d", httpAddr, c.ticket), nil)
	req.Header.Set("Authorization", "Bearer "+c.session)
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
