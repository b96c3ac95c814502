package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/zenklav/zenklav/config"
)

func TestLoadConnectionsYAML(t *testing.T) {
	c, err := config.LoadConnections("testdata/connections.yaml")
	if err != nil {
		t.Fatal(err)
	}
	acmes := c.BySubdomain("acme")
	if len(acmes) != 1 || acmes[0].ID != "acme" || !acmes[0].Zendesk.Brands.All {
		t.Fatalf("acme = %+v", acmes)
	}
	globexes := c.BySubdomain("globex")
	if len(globexes) != 1 || globexes[0].ID != "globex-eu" {
		t.Fatalf("globex = %+v", globexes)
	}
	globex := globexes[0]
	if got := globex.WebhookSecrets(); len(got) != 2 || got[1] != "globex-signing-secret-old1" {
		t.Errorf("secrets = %v", got)
	}
	if !globex.Zendesk.Brands.Includes(360002) || globex.Zendesk.Brands.Includes(1) {
		t.Errorf("brand filter %v", globex.Zendesk.Brands)
	}
	if c.BySubdomain("initech") != nil {
		t.Error("unknown subdomain found")
	}
	sms := globex.SMS
	if !sms.Enabled || sms.Brand != 360001 || len(globex.Klaviyo.WebhookSecrets) != 2 || globex.Klaviyo.WebhookSecrets[1].Reveal() != "globex-klaviyo-secret-old1" {
		t.Errorf("globex's SMS: %+v, %d Klaviyo webhook secrets", sms, len(globex.Klaviyo.WebhookSecrets))
	}
	if strings.Join(sms.Keywords.Ignore, ",") != "JOIN,WINTER" || strings.Join(sms.Keywords.Create, ",") != "HELP,INFO,AIDE" ||
		strings.Join(sms.InboundTopics, ",") != "event:klaviyo.conversation_message_received" {
		t.Errorf("globex's SMS keywords %+v, inbound topics %v", sms.Keywords, sms.InboundTopics)
	}
	if a := acmes[0].SMS; a.Enabled || a.Keywords.Ignore != nil || a.Keywords.Create != nil {
		t.Errorf("acme's SMS %+v, want off with the default keywords (nil lists)", a)
	}
}

func TestParseConnectionsRejects(t *testing.T) {
	valid := `{"id":"acme","zendesk":{"subdomain":"acme","email":"a@b.c","api_token":"t","webhook_secrets":["0123456789abcdef"],"brands":"all"},"klaviyo":{"private_key":"pk_x"}}`
	for _, tc := range []struct{ name, doc, want string }{
		{"empty", `{"connections":[]}`, "no connections"},
		{"unknown key", `{"connections":[` + strings.Replace(valid, `"sms"`, `"smss"`, 1) + `],"extra":1}`, "unknown field"},
		{"bad id", `{"connections":[` + strings.Replace(valid, `"id":"acme"`, `"id":"Acme Inc"`, 1) + `]}`, "id must be"},
		{"bad subdomain", `{"connections":[` + strings.Replace(valid, `"subdomain":"acme"`, `"subdomain":"acme.zendesk.com"`, 1) + `]}`, "not a Zendesk subdomain"},
		{"no secret", `{"connections":[` + strings.Replace(valid, `["0123456789abcdef"]`, `[]`, 1) + `]}`, "webhook_secrets must hold"},
		{"three secrets", `{"connections":[` + strings.Replace(valid, `["0123456789abcdef"]`, `["0123456789abcdef","0123456789abcdeg","0123456789abcdeh"]`, 1) + `]}`, "webhook_secrets must hold"},
		{"short secret", `{"connections":[` + strings.Replace(valid, `0123456789abcdef`, `short`, 1) + `]}`, "shorter than 16"},
		{"brands word", `{"connections":[` + strings.Replace(valid, `"all"`, `"some"`, 1) + `]}`, "brands must be"},
		{"empty brands", `{"connections":[` + strings.Replace(valid, `"all"`, `[]`, 1) + `]}`, "non-empty list"},
		{"SMS without a Klaviyo webhook secret", `{"connections":[` + strings.Replace(valid, `"klaviyo":{"private_key":"pk_x"}`, `"klaviyo":{"private_key":"pk_x"},"sms":{"enabled":true}`, 1) + `]}`, "sms.enabled needs klaviyo.webhook_secrets"},
		{"short Klaviyo webhook secret", `{"connections":[` + strings.Replace(valid, `"private_key":"pk_x"`, `"private_key":"pk_x","webhook_secrets":["short"]`, 1) + `]}`, "klaviyo.webhook_secrets[0] is shorter than 16"},
		{"misspelt SMS setting", `{"connections":[` + strings.Replace(valid, `"klaviyo":{"private_key":"pk_x"}`, `"klaviyo":{"private_key":"pk_x"},"sms":{"enabled":false,"inbound_topic":["x"]}`, 1) + `]}`, "unknown field"},
		{"public klaviyo key", `{"connections":[` + strings.Replace(valid, `pk_x`, `AbC123`, 1) + `]}`, "private API key"},
		{"token without email", `{"connections":[` + strings.Replace(valid, `"a@b.c"`, `""`, 1) + `]}`, "zendesk.email"},
		{"duplicate id", `{"connections":[` + valid + `,` + strings.Replace(valid, `"subdomain":"acme"`, `"subdomain":"other"`, 1) + `]}`, "used twice"},
		{"shared subdomain, one syncs all", `{"connections":[` + valid + `,` + strings.Replace(strings.Replace(valid, `"id":"acme"`, `"id":"other"`, 1), `"all"`, `[1]`, 1) + `]}`, "each must list its brands"},
		{"shared subdomain, a brand twice", `{"connections":[` + strings.Replace(valid, `"all"`, `[1,2]`, 1) + `,` + strings.Replace(strings.Replace(valid, `"id":"acme"`, `"id":"other"`, 1), `"all"`, `[2,3]`, 1) + `]}`, "brand 2 is synced by both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.ParseConnections([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "0123456789abcdef") || strings.Contains(err.Error(), "pk_x") {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}

// TestConnectionsPerBrand: one Zendesk account feeding two Klaviyo accounts, one per brand.
func TestConnectionsPerBrand(t *testing.T) {
	conn := func(id, brands, secret string) string {
		return `{"id":"` + id + `","zendesk":{"subdomain":"acme","webhook_secrets":["` + secret + `"],"brands":` + brands + `}}`
	}
	c, err := config.ParseConnections([]byte(`{"connections":[` + conn("acme-us", "[1,2]", "us-signing-secret-0001") + `,` +
		conn("acme-eu", "[3]", "eu-signing-secret-0001") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	for brand, want := range map[int64]string{1: "acme-us", 2: "acme-us", 3: "acme-eu", 4: "", 0: ""} {
		got := c.Owner("acme", brand)
		if (got == nil && want != "") || (got != nil && got.ID != want) {
			t.Errorf("brand %d goes to %v, want %q", brand, got, want)
		}
	}
	if got := c.WebhookSecrets("acme"); len(got) != 2 {
		t.Errorf("secrets of the account: %d, want both connections' 2", len(got))
	}
}

func TestSecretNeverPrints(t *testing.T) {
	const secret = "super-secret-value-123"
	c, err := config.ParseConnections([]byte(`{"connections":[{"id":"acme","zendesk":{"subdomain":"acme","email":"a@b.c","api_token":"` + secret +
		`","webhook_secrets":["` + secret + `"],"brands":"all"},"klaviyo":{"private_key":"pk_` + secret + `"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	conn := c.All()[0]
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("loaded", "conn", conn, "token", conn.Zendesk.APIToken)
	js, _ := json.Marshal(conn)
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", conn), "%+v": fmt.Sprintf("%+v", conn), "%#v": fmt.Sprintf("%#v", conn),
		"json": string(js), "slog": logs.String(),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("%s shows the secret: %s", name, out)
		}
	}
	if conn.Zendesk.APIToken.Reveal() != secret {
		t.Error("Reveal does not return the secret")
	}
}

func TestFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := config.FromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:8080" || len(c.KafkaBrokers) != 0 || c.KlaviyoBaseURL != "https://a.klaviyo.com" {
		t.Errorf("defaults = %+v", c)
	}
	if c.HTTPMaxInflightBytes != 32<<20 {
		t.Errorf("default in-flight bytes = %d, want 32 MiB", c.HTTPMaxInflightBytes)
	}
	if c, err := config.FromEnv(env(map[string]string{"ZENKLAV_HTTP_MAX_INFLIGHT_BYTES": "4194304"})); err != nil || c.HTTPMaxInflightBytes != 4<<20 {
		t.Errorf("ZENKLAV_HTTP_MAX_INFLIGHT_BYTES=4194304: %d, %v", c.HTTPMaxInflightBytes, err)
	}
	c, err = config.FromEnv(env(map[string]string{"ZENKLAV_KAFKA_BROKERS": " a:9092, b:9092 ,", "ZENKLAV_SINK_BATCH_WAIT": "250ms"}))
	if err != nil || len(c.KafkaBrokers) != 2 || c.KafkaBrokers[1] != "b:9092" || c.SinkBatchWait.Milliseconds() != 250 {
		t.Errorf("FromEnv = %+v, %v", c, err)
	}
	for name, m := range map[string]map[string]string{
		"batch size word":  {"ZENKLAV_SINK_BATCH_SIZE": "lots"},
		"batch size zero":  {"ZENKLAV_SINK_BATCH_SIZE": "0"},
		"wait no unit":     {"ZENKLAV_SINK_BATCH_WAIT": "5"},
		"klaviyo not http": {"ZENKLAV_KLAVIYO_BASE_URL": "a.klaviyo.com"},
		"partitions":       {"ZENKLAV_TOPIC_PARTITIONS": "-1"},
		"inflight bytes":   {"ZENKLAV_HTTP_MAX_INFLIGHT_BYTES": "64MiB"},
		"inflight small":   {"ZENKLAV_HTTP_MAX_INFLIGHT_BYTES": "1048576"},
	} {
		if _, err := config.FromEnv(env(m)); err == nil {
			t.Errorf("%s: accepted %v", name, m)
		}
	}
}

// The replication settings are 0 (chosen from the cluster) unless set; a min.insync.replicas
// over the replication factor is refused, as Kafka could acknowledge no write.
func TestFromEnvReplication(t *testing.T) {
	for _, tc := range []struct {
		name           string
		factor, insync string
		wantFactor     int
		wantInsync     int
		err            string
	}{
		{name: "unset: from the cluster"},
		{name: "three and two", factor: "3", insync: "2", wantFactor: 3, wantInsync: 2},
		{name: "factor only", factor: "3", wantFactor: 3},
		{name: "min.insync only", insync: "2", wantInsync: 2},
		{name: "min.insync equal to the factor", factor: "2", insync: "2", wantFactor: 2, wantInsync: 2},
		{name: "min.insync over the factor", factor: "2", insync: "3", err: "is more than ZENKLAV_KAFKA_REPLICATION_FACTOR=2"},
		{name: "negative factor", factor: "-1", err: "ZENKLAV_KAFKA_REPLICATION_FACTOR=-1 is outside"},
		{name: "negative min.insync", insync: "-1", err: "ZENKLAV_KAFKA_MIN_INSYNC_REPLICAS=-1 is negative"},
		{name: "factor not a number", factor: "three", err: "not a whole number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.FromEnv(func(k string) string {
				return map[string]string{"ZENKLAV_KAFKA_REPLICATION_FACTOR": tc.factor, "ZENKLAV_KAFKA_MIN_INSYNC_REPLICAS": tc.insync}[k]
			})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ReplicationFactor != tc.wantFactor || c.MinInsyncReplicas != tc.wantInsync {
				t.Errorf("factor, min.insync = %d, %d; want %d, %d", c.ReplicationFactor, c.MinInsyncReplicas, tc.wantFactor, tc.wantInsync)
			}
		})
	}
}

func TestParseSigningKeys(t *testing.T) {
	const (
		a = "secret-a-0123456789abcdef0123456789"
		b = "secret-b-0123456789abcdef0123456789"
	)
	for _, tc := range []struct {
		name, value string
		want        []string // id=secret, current first
		err         string
	}{
		{name: "unset", value: ""},
		{name: "bare secret keeps working", value: a, want: []string{"default=" + a}},
		{name: "bare secret is taken byte for byte", value: " " + a + " ", want: []string{"default= " + a + " "}},
		{name: "bare secret with a colon after a non-id", value: "a b:" + a, want: []string{"default=a b:" + a}},
		{name: "one key with an id", value: "2026-11:" + a, want: []string{"2026-11=" + a}},
		{name: "rotation, current first", value: "2026-11:" + a + ", 2026-10:" + b, want: []string{"2026-11=" + a, "2026-10=" + b}},
		{name: "explicit default id", value: "default:x:" + a, want: []string{"default=x:" + a}},
		{name: "short bare secret", value: "short", err: "at least 32"},
		{name: "short keyed secret", value: "2026-11:" + a + ",2026-10:short", err: `key "2026-10" is 5 characters`},
		{name: "duplicate id", value: "k1:" + a + ",k1:" + b, err: `"k1" is listed twice`},
		{name: "item without id", value: "k1:" + a + "," + b, err: "key 2 is not id:secret"},
		{name: "empty item", value: "k1:" + a + ",", err: "key 2 is not id:secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := config.ParseSigningKeys(tc.value)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one saying %q", err, tc.err)
				}
				if strings.Contains(err.Error(), a) || strings.Contains(err.Error(), b) {
					t.Errorf("error shows a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, k := range keys {
				got = append(got, k.ID+"="+k.Secret.Reveal())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("keys = %q, want %q", got, tc.want)
			}
			if s := fmt.Sprintf("%v %+v %#v", keys, keys, keys); strings.Contains(s, a) || strings.Contains(s, b) {
				t.Errorf("keys print their secrets: %s", s)
			}
		})
	}
}

func TestFromEnvSigningKeys(t *testing.T) {
	const current, previous = "current-0123456789abcdef0123456789", "previous-0123456789abcdef0123456789"
	c, err := config.FromEnv(func(k string) string {
		if k == "ZENKLAV_JWT_SIGNING_KEY" {
			return "2026-11:" + current + ",2026-10:" + previous
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.JWTKeys) != 2 || c.JWTKeys[0].ID != "2026-11" || c.JWTSigningKey.Reveal() != current {
		t.Errorf("keys = %v, signing key %q: want 2026-11 signing, 2026-10 listed", c.JWTKeys, c.JWTSigningKey)
	}
	if _, err := config.FromEnv(func(k string) string {
		if k == "ZENKLAV_JWT_SIGNING_KEY" {
			return "too-short"
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), "ZENKLAV_JWT_SIGNING_KEY") {
		t.Errorf("a short key: %v, want an error naming ZENKLAV_JWT_SIGNING_KEY", err)
	}
}

// TestFromEnvSetup: the settings of connecting accounts are read with their defaults, each
// mistake is named, and no message quotes an OAuth client's secret.
func TestFromEnvSetup(t *testing.T) {
	const secret = "oauth-client-secret-0123456789"
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := config.FromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "" || c.KlaviyoOAuthURL != "https://www.klaviyo.com" || c.ZendeskOAuthClientID != "" || c.KlaviyoOAuthClientID != "" {
		t.Errorf("setup defaults = %+v", c.Setup)
	}
	if err := c.Setup.Validate(); err == nil || !strings.Contains(err.Error(), "ZENKLAV_PUBLIC_URL is empty") {
		t.Errorf("Validate without a public URL = %v, want it to ask for ZENKLAV_PUBLIC_URL", err)
	}
	c, err = config.FromEnv(env(map[string]string{
		"ZENKLAV_PUBLIC_URL":                  "https://zenklav.example.com/",
		"ZENKLAV_ZENDESK_OAUTH_CLIENT_ID":     "zdg-zenklav",
		"ZENKLAV_ZENDESK_OAUTH_CLIENT_SECRET": secret,
		"ZENKLAV_KLAVIYO_OAUTH_CLIENT_ID":     "klaviyo-app",
		"ZENKLAV_KLAVIYO_OAUTH_CLIENT_SECRET": secret,
		"ZENKLAV_KLAVIYO_OAUTH_URL":           "http://127.0.0.1:9999",
	}))
	if err != nil || c.Setup.Validate() != nil {
		t.Fatalf("FromEnv = %v, Validate = %v", err, c.Setup.Validate())
	}
	if c.ZendeskOAuthClientSecret.Reveal() != secret || c.KlaviyoOAuthClientID != "klaviyo-app" || c.KlaviyoOAuthURL != "http://127.0.0.1:9999" {
		t.Errorf("setup = %+v", c.Setup)
	}
	if s := fmt.Sprintf("%v %+v", c.Setup, c); strings.Contains(s, secret) {
		t.Errorf("the configuration prints an OAuth client secret: %s", s)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"public URL not a URL", map[string]string{"ZENKLAV_PUBLIC_URL": "zenklav.example.com"}, `ZENKLAV_PUBLIC_URL="zenklav.example.com" is not an absolute http(s) URL`},
		{"public URL with a query", map[string]string{"ZENKLAV_PUBLIC_URL": "https://zenklav.example.com/?a=b"}, "without credentials, query or fragment"},
		{"public URL with credentials", map[string]string{"ZENKLAV_PUBLIC_URL": "https://user:" + secret + "@zenklav.example.com"}, "without credentials"},
		{"Klaviyo OAuth URL", map[string]string{"ZENKLAV_KLAVIYO_OAUTH_URL": "www.klaviyo.com"}, "ZENKLAV_KLAVIYO_OAUTH_URL"},
		{"Zendesk secret without id", map[string]string{"ZENKLAV_ZENDESK_OAUTH_CLIENT_SECRET": secret}, "ZENKLAV_ZENDESK_OAUTH_CLIENT_SECRET is set but ZENKLAV_ZENDESK_OAUTH_CLIENT_ID is empty"},
		{"Zendesk id without secret", map[string]string{"ZENKLAV_ZENDESK_OAUTH_CLIENT_ID": "zdg-x"}, "ZENKLAV_ZENDESK_OAUTH_CLIENT_ID is set but ZENKLAV_ZENDESK_OAUTH_CLIENT_SECRET is empty"},
		{"Klaviyo secret without id", map[string]string{"ZENKLAV_KLAVIYO_OAUTH_CLIENT_SECRET": secret}, "ZENKLAV_KLAVIYO_OAUTH_CLIENT_SECRET is set"},
		{"Klaviyo id with a space", map[string]string{"ZENKLAV_KLAVIYO_OAUTH_CLIENT_ID": "a b", "ZENKLAV_KLAVIYO_OAUTH_CLIENT_SECRET": secret}, "ZENKLAV_KLAVIYO_OAUTH_CLIENT_ID has spaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.FromEnv(env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error quotes a secret: %v", err)
			}
		})
	}
}
