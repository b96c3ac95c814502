package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstore"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/seal"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// setupRig is what `zenklav setup` runs against in a test: both simulators, the test's Kafka
// with a connections store of the test's own, and the environment that names them.
type setupRig struct {
	env            map[string]string
	zd             *zendesktest.Server
	kl             *klaviyotest.Server
	klaviyoKey     string
	brand1, brand2 int64
	topic, key     string
}

const setupPublicURL = "https://zenklav.example.com"

func newSetupRig(t *testing.T) *setupRig {
	t.Helper()
	broker := testenv.Kafka(t)
	key, err := seal.NewKey("setup")
	if err != nil {
		t.Fatal(err)
	}
	r := &setupRig{zd: zendesktest.NewServer(), kl: klaviyotest.NewServer(), key: key,
		klaviyoKey: fmt.Sprintf("pk_setup_%d", rand.N(1_000_000)), topic: fmt.Sprintf("connections-setup-%d", rand.N(1_000_000))}
	t.Cleanup(r.zd.Close)
	t.Cleanup(r.kl.Close)
	r.brand1 = r.zd.AddBrand(zendesk.Brand{Name: "Acme", Active: true}).ID
	r.brand2 = r.zd.AddBrand(zendesk.Brand{Name: "Acme SMS", Active: true}).ID
	r.kl.AddAccount(r.klaviyoKey)
	r.env = map[string]string{
		"ZENKLAV_KAFKA_BROKERS": broker, "ZENKLAV_SECRETS_KEY": key, "ZENKLAV_CONNECTIONS_TOPIC": r.topic,
		"ZENKLAV_PUBLIC_URL": setupPublicURL, "ZENKLAV_ZENDESK_BASE_URL": r.zd.URL, "ZENKLAV_KLAVIYO_BASE_URL": r.kl.URL,
		"ZENKLAV_LOG_LEVEL": "error",
	}
	return r
}

// run runs `zenklav setup ARGS` with answers on its input, and returns what it printed.
func (r *setupRig) run(t *testing.T, answers []string, args ...string) (string, error) {
	t.Helper()
	out := &syncBuffer{}
	err := r.start(t, answers, out, args...)
	return out.String(), err
}

// start runs `zenklav setup ARGS` into out and returns its error.
func (r *setupRig) start(t *testing.T, answers []string, out *syncBuffer, args ...string) error {
	t.Helper()
	old := setupInput
	setupInput = strings.NewReader(strings.Join(answers, "\n") + "\n")
	defer func() { setupInput = old }()
	return run(context.Background(), append([]string{"setup"}, args...), func(k string) string { return r.env[k] }, out)
}

// stored is the connection of id in the store, and its record as the topic holds it.
func (r *setupRig) stored(t *testing.T, id string) (connstore.Entry, string, error) {
	t.Helper()
	ctx := context.Background()
	keys, err := seal.ParseKeyring(zenklav.Secret(r.key))
	if err != nil {
		t.Fatal(err)
	}
	brokers := []string{r.env["ZENKLAV_KAFKA_BROKERS"]}
	logger := slog.New(slog.DiscardHandler)
	p := kafka.NewProducer(logger, brokers)
	defer p.Close()
	store, err := connstore.Open(ctx, logger, brokers, kafka.Topic{Name: r.topic, Partitions: 1}, p, keys)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	raw, err := kafka.OpenTable(ctx, logger, brokers, r.topic, p)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	v, _ := raw.Get(id)
	e, err := store.Get(id)
	return e, string(v), err
}

// wizardAnswers are the answers of a connection set up with an API token and a private key;
// a stored connection is asked how to connect (keep what it has, or another way), a new one
// is not, there being one way.
func (r *setupRig) wizardAnswers(id string, stored bool, brands string, sms bool) []string {
	a := []string{id, "acme", zendesktest.DefaultEmail, zendesktest.DefaultAPIToken, r.klaviyoKey, brands}
	if stored {
		a = []string{id, "acme", "token", zendesktest.DefaultEmail, zendesktest.DefaultAPIToken, "key", r.klaviyoKey, brands}
	}
	if !sms {
		return append(a, "n")
	}
	return append(a, "y", fmt.Sprint(r.brand2), "", "HELP, INFO, AYUDA, AIDE", "y", "y")
}

// `zenklav setup` with an API token and a private key: it makes the Zendesk webhook, the SMS
// automation and view and the Klaviyo webhook, and stores the connection with its secrets
// sealed; run again, it changes nothing; a second connection of the same account, set up
// from a file, shares the webhook; --disconnect removes exactly what each made.
func TestSetupCommand(t *testing.T) {
	r := newSetupRig(t)
	id := fmt.Sprintf("acme-%d", rand.N(1_000_000))
	out, err := r.run(t, r.wizardAnswers(id, false, fmt.Sprint(r.brand1), true))
	if err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	if strings.Contains(out, "Connect Zendesk with") || !strings.Contains(out, "with an API token") {
		t.Errorf("the wizard asks how to connect Zendesk without an OAuth client, or does not say how it will:\n%s", out)
	}
	for _, secret := range []string{zendesktest.DefaultAPIToken, r.klaviyoKey} {
		if strings.Contains(out, secret) {
			t.Errorf("setup printed a secret:\n%s", out)
		}
	}
	hooks, rules, views, kHooks := r.zd.Webhooks(), r.zd.Automations(), r.zd.Views(), r.kl.Webhooks(r.klaviyoKey)
	if len(hooks) != 1 || hooks[0].Endpoint != setupPublicURL+"/webhooks/zendesk/acme" || hooks[0].Status != "active" {
		t.Fatalf("Zendesk webhooks after setup: %+v\n%s", hooks, out)
	}
	if len(rules) != 1 || len(views) != 1 || len(kHooks) != 1 || kHooks[0].EndpointURL != setupPublicURL+"/webhooks/klaviyo/"+id {
		t.Fatalf("after setup: automations %+v, views %+v, Klaviyo webhooks %+v", rules, views, kHooks)
	}
	e, raw, err := r.stored(t, id)
	if err != nil {
		t.Fatal(err)
	}
	c := e.Connection
	if got := c.WebhookSecrets(); len(got) != 1 || got[0] != hooks[0].SigningSecret || c.Klaviyo.WebhookSecrets[0].Reveal() != kHooks[0].SecretKey {
		t.Errorf("the stored secrets are not the webhooks' (Zendesk %d, Klaviyo %d)", len(got), len(c.Klaviyo.WebhookSecrets))
	}
	if b := c.Zendesk.Brands; b.All || len(b.IDs) != 1 || b.IDs[0] != r.brand1 || c.SMS.Brand != r.brand2 || !c.SMS.CloseSolved || !c.SMS.View ||
		c.SMS.Keywords.Ignore != nil || strings.Join(c.SMS.Keywords.Create, ",") != "HELP,INFO,AYUDA,AIDE" {
		t.Errorf("stored settings: brands %v, SMS %+v", b, c.SMS)
	}
	for _, secret := range []string{zendesktest.DefaultAPIToken, r.klaviyoKey, hooks[0].SigningSecret, kHooks[0].SecretKey} {
		if strings.Contains(raw, secret) {
			t.Errorf("the topic holds a secret in the clear: %s", raw)
		}
	}
	if !strings.Contains(raw, `"sealed"`) {
		t.Errorf("the topic's record has no sealed secrets: %s", raw)
	}

	writes := len(r.zd.Writes())
	out, err = r.run(t, r.wizardAnswers(id, true, fmt.Sprint(r.brand1), true))
	if err != nil {
		t.Fatalf("setup again: %v\n%s", err, out)
	}
	if len(r.zd.Writes()) != writes || len(r.kl.Webhooks(r.klaviyoKey)) != 1 || strings.Contains(out, "created or updated") || !regexp.MustCompile(`unchanged +connection `+id).MatchString(out) {
		t.Errorf("setup again wrote %v to Zendesk:\n%s", r.zd.Writes()[writes:], out)
	}

	// A second connection of the account, for its other brand, from a file: it shares the
	// webhook, and makes no SMS objects.
	other := id + "-b"
	file := filepath.Join(t.TempDir(), "connection.yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, "id: %s\nzendesk:\n  subdomain: acme\n  email: %s\n  api_token: %s\n  brands: [%d]\nklaviyo:\n  private_key: %s\n",
		other, zendesktest.DefaultEmail, zendesktest.DefaultAPIToken, r.brand2, r.klaviyoKey), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if out, err := r.run(t, nil, "--non-interactive", "-f", file); err != nil || !strings.Contains(out, "Connection "+other+" is set up") {
			t.Fatalf("setup -f: %v\n%s", err, out)
		}
	}
	if len(r.zd.Webhooks()) != 1 || len(r.zd.Automations()) != 1 || len(r.zd.Views()) != 1 || len(r.kl.Webhooks(r.klaviyoKey)) != 1 {
		t.Errorf("after the file's connection: %d webhooks, %d automations, %d views, %d Klaviyo webhooks; want 1 each",
			len(r.zd.Webhooks()), len(r.zd.Automations()), len(r.zd.Views()), len(r.kl.Webhooks(r.klaviyoKey)))
	}

	out, err = r.run(t, nil, "--disconnect", id)
	if err != nil {
		t.Fatalf("setup --disconnect: %v\n%s", err, out)
	}
	if len(r.zd.Webhooks()) != 1 || len(r.zd.Automations()) != 0 || len(r.zd.Views()) != 0 || len(r.kl.Webhooks(r.klaviyoKey)) != 0 {
		t.Errorf("after disconnecting %s: %d webhooks (want the shared one), %d automations, %d views, %d Klaviyo webhooks:\n%s", id,
			len(r.zd.Webhooks()), len(r.zd.Automations()), len(r.zd.Views()), len(r.kl.Webhooks(r.klaviyoKey)), out)
	}
	if _, _, err := r.stored(t, id); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("%s is still stored: %v", id, err)
	}
	if out, err := r.run(t, nil, "--disconnect", other); err != nil || len(r.zd.Webhooks()) != 0 {
		t.Errorf("disconnecting %s: %v, %d webhooks left:\n%s", other, err, len(r.zd.Webhooks()), out)
	}
}

// The wizard refuses what it cannot use and asks again, and says clearly what is missing.
func TestSetupRefuses(t *testing.T) {
	r := newSetupRig(t)
	id := fmt.Sprintf("acme-%d", rand.N(1_000_000))
	// A bad id, a key that is not a private key, a brand that is not the account's: each asked
	// again; then the input ends before the SMS question.
	answers := []string{"Acme Inc", id, "https://acme.zendesk.com/", zendesktest.DefaultEmail, zendesktest.DefaultAPIToken,
		"not-a-private-key", r.klaviyoKey, "42", "all"}
	out, err := r.run(t, answers)
	if err == nil || !strings.Contains(err.Error(), "the input ended") {
		t.Errorf("setup with answers that end early = %v, want it to say the input ended", err)
	}
	for _, want := range []string{"an id is 1-63 lowercase", "a private API key starts with pk_", `"42" is not the id of a brand above`, "Acme SMS"} {
		if !strings.Contains(out, want) {
			t.Errorf("the wizard does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not-a-private-key") || strings.Contains(out, zendesktest.DefaultAPIToken) {
		t.Errorf("the wizard printed a secret typed:\n%s", out)
	}
	if _, _, err := r.stored(t, id); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("a setup cut short stored the connection: %v", err)
	}
	delete(r.env, "ZENKLAV_PUBLIC_URL")
	if _, err := r.run(t, r.wizardAnswers(id, false, "all", false)); err == nil || !strings.Contains(err.Error(), "ZENKLAV_PUBLIC_URL is empty") {
		t.Errorf("setup without a public URL = %v", err)
	}
	for _, args := range [][]string{{"-f", "x.json"}, {"--disconnect", id, "--non-interactive"}, {"extra"}} {
		if _, err := r.run(t, nil, args...); err == nil {
			t.Errorf("setup %q was accepted", args)
		}
	}
}

// "Connect with Zendesk" and "Connect with Klaviyo" in a terminal: the command prints each
// consent page's address, the browser (here, plain HTTP) allows, the simulator sends it back
// to the command's listener, which exchanges the code; the connection reaches both accounts
// by its grants, and --disconnect revokes them.
func TestSetupOAuth(t *testing.T) {
	r := newSetupRig(t)
	r.env["ZENKLAV_ZENDESK_OAUTH_CLIENT_ID"], r.env["ZENKLAV_ZENDESK_OAUTH_CLIENT_SECRET"] = zendesktest.DefaultOAuthClientID, zendesktest.DefaultOAuthClientSecret
	r.env["ZENKLAV_KLAVIYO_OAUTH_CLIENT_ID"], r.env["ZENKLAV_KLAVIYO_OAUTH_CLIENT_SECRET"] = klaviyotest.DefaultOAuthClientID, klaviyotest.DefaultOAuthClientSecret
	r.env["ZENKLAV_KLAVIYO_OAUTH_URL"] = r.kl.URL
	r.env["ZENKLAV_LOG_LEVEL"] = "debug" // for the secret grep at the end
	id := fmt.Sprintf("oauth-%d", rand.N(1_000_000))
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- r.start(t, []string{id, "acme", "oauth", "oauth", "all", "y", "0", "", "", "n", "y"}, out)
	}()
	for _, base := range []string{r.zd.URL, r.kl.URL} {
		authorize := waitForLine(t, out, done, regexp.MustCompile(`(?m)^  (`+regexp.QuoteMeta(base)+`/oauth/\S+)$`))
		allow(t, authorize, base)
	}
	if err := <-done; err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "Zendesk is connected") || !strings.Contains(out.String(), "Klaviyo is connected") {
		t.Errorf("setup did not say both are connected:\n%s", out)
	}
	e, _, err := r.stored(t, id)
	if err != nil {
		t.Fatal(err)
	}
	c := e.Connection
	if c.Zendesk.OAuth == nil || c.Zendesk.APIToken != "" || c.Klaviyo.OAuth == nil || c.Klaviyo.PrivateKey != "" || c.Zendesk.OAuth.RefreshToken == "" ||
		!c.Zendesk.OAuth.ExpiresWithin(time.Now(), 31*time.Minute) {
		t.Fatalf("stored grants: zendesk %v, klaviyo %v", c.Zendesk.OAuth != nil, c.Klaviyo.OAuth != nil)
	}
	if len(r.zd.Webhooks()) != 1 || len(r.kl.Webhooks(r.klaviyoKey)) != 1 || len(r.zd.Views()) != 1 || len(r.zd.Automations()) != 0 {
		t.Errorf("made with the grants: %d webhooks, %d Klaviyo webhooks, %d views, %d automations", len(r.zd.Webhooks()),
			len(r.kl.Webhooks(r.klaviyoKey)), len(r.zd.Views()), len(r.zd.Automations()))
	}
	tokens := r.zd.OAuthTokens()
	if len(tokens) != 1 {
		t.Fatalf("Zendesk tokens: %+v, want the grant's", tokens)
	}
	// The refresher, as an api process runs it, 55 minutes on: both grants are due (Zendesk's
	// 30-minute token, Klaviyo's hour), renewed with the real clients and stored.
	e2, err := newEnv(func(k string) string { return r.env[k] }, io.Discard, envOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.close()
	svc, err := e2.setupService(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := svc.Refresh(context.Background(), time.Now().Add(55*time.Minute)); n != 2 || err != nil {
		t.Fatalf("Refresh = %d, %v; want both grants renewed", n, err)
	}
	e, _, _ = r.stored(t, id)
	if z, k := e.Connection.Zendesk.OAuth, e.Connection.Klaviyo.OAuth; z.AccessToken == c.Zendesk.OAuth.AccessToken ||
		z.RefreshToken == c.Zendesk.OAuth.RefreshToken || k.AccessToken == c.Klaviyo.OAuth.AccessToken {
		t.Error("the stored grants were not replaced by the renewed ones")
	}
	if now := r.zd.OAuthTokens(); len(now) != 1 || now[0].ID == tokens[0].ID {
		t.Errorf("Zendesk tokens after the refresh: %+v, want one, another than %d", now, tokens[0].ID)
	}
	o, err := r.run(t, nil, "--disconnect", id)
	if err != nil || !strings.Contains(o, "Zendesk grant") || !strings.Contains(o, "Klaviyo grant") {
		t.Fatalf("disconnect: %v\n%s", err, o)
	}
	// No grant's token, first or renewed, and no OAuth client secret is in anything the
	// command printed or logged, at debug.
	said := out.String() + o
	for name, secret := range map[string]zenklav.Secret{
		"Zendesk access token": c.Zendesk.OAuth.AccessToken, "Zendesk refresh token": c.Zendesk.OAuth.RefreshToken,
		"Klaviyo access token": c.Klaviyo.OAuth.AccessToken, "Klaviyo refresh token": c.Klaviyo.OAuth.RefreshToken,
		"renewed Zendesk access token": e.Connection.Zendesk.OAuth.AccessToken, "renewed Klaviyo refresh token": e.Connection.Klaviyo.OAuth.RefreshToken,
		"Zendesk client secret": zendesktest.DefaultOAuthClientSecret, "Klaviyo client secret": klaviyotest.DefaultOAuthClientSecret,
	} {
		if secret != "" && strings.Contains(said, secret.Reveal()) {
			t.Errorf("the %s is in what zenklav setup said", name)
		}
	}
	if len(r.zd.OAuthTokens()) != 0 || len(r.zd.Webhooks()) != 0 || len(r.kl.Webhooks(r.klaviyoKey)) != 0 {
		t.Errorf("after disconnect: Zendesk tokens %+v, %d webhooks, %d Klaviyo webhooks", r.zd.OAuthTokens(), len(r.zd.Webhooks()), len(r.kl.Webhooks(r.klaviyoKey)))
	}
	for _, g := range r.kl.Grants(r.klaviyoKey) {
		if !g.Revoked {
			t.Errorf("a Klaviyo grant is not revoked: %+v", g)
		}
	}
}

// waitForLine waits for a line of out that re matches, and returns its first group.
func waitForLine(t *testing.T, out *syncBuffer, done chan error, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("setup ended before printing %s: %v\n%s", re, err, out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("setup did not print %s:\n%s", re, out)
		}
	}
}

// allow plays the admin's browser on a simulator's consent page: it loads the page and
// posts its form with Allow, then follows the simulator back to the command's listener.
func allow(t *testing.T, authorize, origin string) {
	t.Helper()
	resp, err := http.Get(authorize)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("consent page %s: %d %s", authorize, resp.StatusCode, page)
	}
	form := url.Values{"decision": {"allow"}}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`).FindAllStringSubmatch(string(page), -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	action := regexp.MustCompile(`<form method="post" action="([^"]+)">`).FindStringSubmatch(string(page))
	if action == nil {
		t.Fatalf("the consent page has no form:\n%s", page)
	}
	req, _ := http.NewRequest(http.MethodPost, origin+action[1], strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", origin)
	resp, err = http.DefaultClient.Do(req) // the 302 back to the command is followed
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(back), "is connected") {
		t.Fatalf("back at the command: %d %s", resp.StatusCode, back)
	}
}

// A connection's grant reaches its accounts with the access token the connections hold at
// each call: a refreshed token is used at once, a 401 to a token another process has just
// replaced is sent again with the new one once the store is read, a connection gone is
// unauthorized, and changing between a key and a grant makes a new client.
func TestGrantClients(t *testing.T) {
	var want, seen []string
	var mu sync.Mutex
	zd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got := r.Header.Get("Authorization")
		seen = append(seen, got)
		if !slices.Contains(want, got) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_token","error_description":"The access token provided is expired, revoked, malformed or invalid for other reasons."}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"brands":[{"id":1,"name":"Acme","default":true,"active":true}],"meta":{"has_more":false},"links":{}}`)
	}))
	defer zd.Close()
	accept := func(tokens ...string) {
		mu.Lock()
		defer mu.Unlock()
		want, seen = nil, nil
		for _, tk := range tokens {
			want = append(want, "Bearer "+tk)
		}
	}
	calls := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
	e, err := newEnv(func(k string) string {
		return map[string]string{"ZENKLAV_ZENDESK_BASE_URL": zd.URL, "ZENKLAV_LOG_LEVEL": "error"}[k]
	}, io.Discard, envOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	granted := func(access string) zenklav.Connection {
		return zenklav.Connection{ID: "acme", Zendesk: zenklav.ZendeskSettings{Subdomain: "acme", Brands: zenklav.Brands{All: true},
			WebhookSecrets: []zenklav.Secret{"acme-signing-secret-0001"}, OAuth: &zenklav.OAuthToken{AccessToken: zenklav.Secret(access)}},
			Klaviyo: zenklav.KlaviyoSettings{OAuth: &zenklav.OAuthToken{AccessToken: "klaviyo-access"}}}
	}
	if e.conns, err = zenklav.NewConnections(granted("access-1")); err != nil {
		t.Fatal(err)
	}
	e.clients = &apiClients{e: e, klaviyo: map[string]*klaviyo.Client{}, zendesk: map[string]zendeskClient{}}
	ctx := context.Background()
	brands := func(what string, c zenklav.Connection, wantErr string) *zendesk.Client {
		t.Helper()
		zc := e.clients.zendeskOf(&c)
		if _, err := zc.Brands(ctx); (err == nil) != (wantErr == "") || err != nil && !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: %v, want %q (requests %q)", what, err, wantErr, calls())
		}
		return zc
	}
	accept("access-1")
	first := brands("the grant's token", granted("access-1"), "")
	// Refreshed and stored: the connections have the new token, the old one is revoked.
	accept("access-2")
	e.conns.Replace(granted("access-2"))
	if zc := brands("the refreshed token", granted("access-2"), ""); zc != first {
		t.Error("a refreshed token made a new client")
	}
	// Refreshed by another process, not read here yet: the 401 reads the store, and the
	// request goes again with its token.
	accept("access-3")
	e.catchUp = func(context.Context) error { return e.conns.Replace(granted("access-3")) }
	brands("a token refreshed elsewhere", granted("access-2"), "")
	if got := calls(); len(got) != 2 || got[0] != "Bearer access-2" || got[1] != "Bearer access-3" {
		t.Errorf("requests %q, want one with the old token and one with the new", got)
	}
	// A grant that has truly ended: the 401 stands, once read again.
	accept()
	brands("a revoked grant", granted("access-3"), "401")
	if got := calls(); len(got) != 1 {
		t.Errorf("a 401 with the store's own token was sent %d times, want once", len(got))
	}
	e.catchUp = nil
	e.conns.Replace()
	brands("a connection gone", granted("access-3"), "is no longer connected")
	keyed := granted("")
	keyed.Zendesk.OAuth, keyed.Zendesk.Email, keyed.Zendesk.APIToken = nil, "ops@acme.example", "zendesk-api-token"
	if e.clients.zendeskOf(&keyed) == first {
		t.Error("an API token for the grant kept the grant's client")
	}
	// Klaviyo: a grant's client is the connection's, a key's the account's.
	g1, g2 := granted("a"), granted("a")
	g2.ID = "other"
	k1, k2 := g1, g2
	k1.Klaviyo, k2.Klaviyo = zenklav.KlaviyoSettings{PrivateKey: "pk_shared"}, zenklav.KlaviyoSettings{PrivateKey: "pk_shared"}
	a := e.clients
	grant1, again, grant2, key1, key2 := a.klaviyoOf(&g1), a.klaviyoOf(&g1), a.klaviyoOf(&g2), a.klaviyoOf(&k1), a.klaviyoOf(&k2)
	if grant1 != again || grant1 == grant2 || key1 != key2 || key1 == grant1 {
		t.Error("Klaviyo clients: want one per grant, one per private key, and a new one when a connection changes between them")
	}
}

// Sandbox mode with Kafka keeps its connections in a store of its own, sealed with a key made
// for the process, and follows it: a connection set up while it runs (as /admin does) is
// served within seconds, its webhook pointing at the sandbox's own address.
func TestSandboxStore(t *testing.T) {
	broker := testenv.Kafka(t)
	e, err := newEnv(func(k string) string {
		return map[string]string{"ZENKLAV_HTTP_ADDR": "127.0.0.1:0", "ZENKLAV_LOG_LEVEL": "error"}[k]
	}, io.Discard, envOptions{})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			e.close()
		}
	}()
	e.sandboxOK, e.brokers = true, []string{broker}
	ctx := context.Background()
	conns, err := e.connections(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	if conns.ByID(sandboxSubdomain) == nil || e.connStore == nil || e.cfg.SecretsKey == "" || !strings.HasPrefix(e.cfg.ConnectionsTopic, "connections-sandbox-") {
		t.Fatalf("sandbox mode: connections %v, store %v, a key %v, topic %q", conns.IDs(), e.connStore != nil, e.cfg.SecretsKey != "", e.cfg.ConnectionsTopic)
	}
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[1-9]\d*$`).MatchString(e.cfg.PublicURL) || e.cfg.HTTPAddr != strings.TrimPrefix(e.cfg.PublicURL, "http://") {
		t.Errorf("sandbox mode's public URL %q, HTTP address %q: want its own address, with a port", e.cfg.PublicURL, e.cfg.HTTPAddr)
	}
	if e.zendeskOAuth() == nil || e.klaviyoOAuth() == nil {
		t.Error("sandbox mode offers no \"Connect with …\"")
	}
	svc, err := e.setupService(ctx)
	if err != nil {
		t.Fatal(err)
	}
	added := zenklav.Connection{ID: "added", Zendesk: zenklav.ZendeskSettings{Subdomain: "added", Email: zendesktest.DefaultEmail,
		APIToken: zendesktest.DefaultAPIToken, Brands: zenklav.Brands{All: true}}, Klaviyo: zenklav.KlaviyoSettings{PrivateKey: sandboxKlaviyoKey}}
	if _, _, err := svc.Finish(ctx, added); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for conns.ByID("added") == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the connection set up is not served after 5 s: %v", conns.IDs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !slices.ContainsFunc(e.sandbox.sim.Webhooks(), func(w zendesktest.Webhook) bool { return w.Endpoint == e.cfg.PublicURL+"/webhooks/zendesk/added" }) {
		t.Errorf("the sandbox's Zendesk webhooks: %+v", e.sandbox.sim.Webhooks())
	}
	// The store is the process's: its topic goes with it.
	e.close()
	closed = true
	client := &kafkago.Client{Addr: kafkago.TCP(broker), Timeout: 5 * time.Second}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		md, err := client.Metadata(ctx, &kafkago.MetadataRequest{}) // every topic: naming it could create it
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(md.Topics, func(tp kafkago.Topic) bool { return tp.Name == e.cfg.ConnectionsTopic }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox's connections topic %s outlives the process", e.cfg.ConnectionsTopic)
		}
	}
}
