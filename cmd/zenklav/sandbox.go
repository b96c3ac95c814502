package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/connstore"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/seal"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// Sandbox mode: with no connections file and no secrets key, `zenklav all` runs against
// in-process Zendesk and Klaviyo simulators with one connection, so a newcomer can watch
// webhooks flow, play an SMS conversation from both ends, and connect more accounts of the
// simulators at /admin, without any account of their own.
const (
	sandboxSubdomain = "sandbox"
	// sandboxSecret signs the sandbox's webhooks. It protects nothing real, which is why it
	// may be printed.
	sandboxSecret = "sandbox-webhook-signing-secret"
	// sandboxKlaviyoKey is the sandbox's Klaviyo account: a simulator's, worthless elsewhere.
	sandboxKlaviyoKey = "pk_sandbox_zenklav"
	// sandboxInstallation is the id of the sidebar app installed on the simulated account.
	sandboxInstallation = 1
	// sandboxKlaviyoSecret signs the Klaviyo simulator's SMS webhooks; printable, as
	// sandboxSecret.
	sandboxKlaviyoSecret = "sandbox-klaviyo-webhook-secret"
)

// sandboxTexter is the customer the phone page texts from by default: a subscribed Klaviyo
// profile with a name and an email, and no Zendesk user yet, so the first text shows zenklav
// making the requester from the profile.
var sandboxTexter = klaviyotest.SMSProfile{
	Phone: "+15555550177", Email: "sofia.reyes@example.com", FirstName: "Sofia", LastName: "Reyes", Consent: klaviyotest.Subscribed,
}

type sandbox struct {
	url        string // the Zendesk simulator's base URL
	klaviyoURL string // the Klaviyo simulator's base URL
	webhook    string // zenklav's webhook URL for the sandbox connection
	sim        *zendesktest.Server
	klaviyo    *klaviyotest.Server
	sample     zendesktest.Sample
	srvs       []*http.Server
	conns      *zenklav.Connections
}

// sandboxMode starts sandbox mode: the simulators and their connection, a signing key and
// the simulators' OAuth clients, and, with Kafka at hand (`zenklav all`), a connections store
// of the process's own with a secrets key made for it, so that the /admin wizard can add
// connections as in production. Without Kafka (a test's env) the connection alone is served.
func (e *env) sandboxMode(ctx context.Context) (*zenklav.Connections, error) {
	sb, err := startSandbox(ctx, e.logger.With("role", "sandbox"))
	if err != nil {
		return nil, err
	}
	e.onClose(sb.Close)
	e.sandbox = sb
	e.cfg.KlaviyoBaseURL, e.cfg.ZendeskBaseURL = sb.klaviyoURL, sb.url
	if len(e.cfg.JWTKeys) == 0 {
		e.cfg.SetSigningKeys([]auth.SigningKey{{ID: "sandbox", Secret: randomSigningKey()}})
	}
	// The simulators know their own OAuth clients only.
	e.cfg.ZendeskOAuthClientID, e.cfg.ZendeskOAuthClientSecret = zendesktest.DefaultOAuthClientID, zendesktest.DefaultOAuthClientSecret
	e.cfg.KlaviyoOAuthClientID, e.cfg.KlaviyoOAuthClientSecret = klaviyotest.DefaultOAuthClientID, klaviyotest.DefaultOAuthClientSecret
	e.cfg.KlaviyoOAuthURL = sb.klaviyoURL
	if err := e.sandboxPublicURL(); err != nil {
		return nil, err
	}
	if len(e.brokers) == 0 {
		e.conns = sb.conns
		return e.conns, nil
	}
	key, err := seal.NewKey("sandbox")
	if err != nil {
		return nil, err
	}
	keys, err := seal.ParseKeyring(zenklav.Secret(key))
	if err != nil {
		return nil, err
	}
	// A key of its own means a topic of its own: what another process sealed under its key
	// could not be read with this one. Connections added at /admin last as long as the
	// process, as the simulators' accounts do.
	e.cfg.SecretsKey, e.cfg.ConnectionsTopic = zenklav.Secret(key), "connections-"+keys.Current()
	e.onClose(func() { dropTopic(e.brokers, e.cfg.ConnectionsTopic) }) // once the store is closed
	topic := e.topic(e.cfg.ConnectionsTopic, true)
	topic.Partitions = 1
	store, err := connstore.Open(ctx, e.logger, e.brokers, topic, e.kafkaProducer(), keys)
	if err != nil {
		return nil, err
	}
	e.onClose(store.Close)
	for _, c := range sb.conns.All() {
		if err := store.Put(ctx, c, false); err != nil {
			return nil, err
		}
	}
	e.logger.Info("sandbox mode: ZENKLAV_SECRETS_KEY is empty, so a secrets key was made for this process; its connections store is a topic of its own",
		"key_id", keys.Current(), "topic", e.cfg.ConnectionsTopic)
	return e.followStore(ctx, store)
}

// dropTopic deletes the sandbox's connections store when the process ends, so that the
// embedded broker, which keeps its log, does not gather one per run. It is best effort: a
// process killed leaves its topic, which is a few records.
func dropTopic(brokers []string, topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 2 * time.Second}
	_, _ = client.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: []string{topic}})
}

// sandboxPublicURL makes sandbox mode's own HTTP address its public URL, unless
// ZENKLAV_PUBLIC_URL says otherwise: the simulators, in this process, reach it. A port of 0
// is chosen now, so that the webhooks setup makes know where to go before the server
// listens.
func (e *env) sandboxPublicURL() error {
	if e.cfg.PublicURL != "" {
		return nil
	}
	host, port, err := net.SplitHostPort(e.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("ZENKLAV_HTTP_ADDR=%s: %w", e.cfg.HTTPAddr, err)
	}
	if port == "0" {
		ln, err := net.Listen("tcp", e.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("listen on ZENKLAV_HTTP_ADDR=%s: %w", e.cfg.HTTPAddr, err)
		}
		_, port, _ = net.SplitHostPort(ln.Addr().String())
		ln.Close()
		e.cfg.HTTPAddr = net.JoinHostPort(host, port)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	e.cfg.PublicURL = "http://" + net.JoinHostPort(host, port)
	return nil
}

func startSandbox(ctx context.Context, logger *slog.Logger) (*sandbox, error) {
	sim, err := zendesktest.New(logger)
	if err != nil {
		return nil, fmt.Errorf("start zendesk simulator: %w", err)
	}
	ksim, err := klaviyotest.New(logger)
	if err != nil {
		sim.Close()
		return nil, fmt.Errorf("start klaviyo simulator: %w", err)
	}
	sb := &sandbox{sim: sim, klaviyo: ksim}
	ksim.AddAccount(sandboxKlaviyoKey)
	// The phone page texts the sandbox's account; a number typed there is a customer who
	// joined before, so any number starts a conversation.
	ksim.SetPhone(klaviyotest.Phone{Account: sandboxKlaviyoKey, AutoSubscribe: true})
	ksim.SetSMSProfile(sandboxKlaviyoKey, sandboxTexter)
	// The simulated account has the sidebar app installed, signing its page's tokens with a
	// key of its own; zenklav's connection holds the public half, as an operator's would.
	if err := sim.InstallApp(zendesktest.AppInstallation{Subdomain: sandboxSubdomain, InstallationID: sandboxInstallation}); err != nil {
		sb.Close()
		return nil, err
	}
	sb.sample = sim.Seed()
	// Added after the sample's brand, which stays the account's default.
	smsBrand := sim.AddBrand(zendesk.Brand{Name: "Northwind Outfitters SMS", Subdomain: "northwind-sms", BrandURL: "https://northwind-sms.zendesk.com", Active: true})
	if sb.conns, err = sandboxConnections(sim, smsBrand.ID); err != nil {
		sb.Close()
		return nil, err
	}
	if sb.url, err = sb.serve(logger, "zendesk", sim); err != nil {
		sb.Close()
		return nil, err
	}
	if sb.klaviyoURL, err = sb.serve(logger, "klaviyo", ksim); err != nil {
		sb.Close()
		return nil, err
	}
	if err := sb.seedKlaviyo(ctx, logger); err != nil {
		sb.Close()
		return nil, err
	}
	return sb, nil
}

// sandboxConnections is the sandbox's one connection: every brand of the simulated Zendesk
// account, the simulated Klaviyo account, the sidebar app, and SMS conversations whose
// tickets get smsBrand.
func sandboxConnections(sim *zendesktest.Server, smsBrand int64) (*zenklav.Connections, error) {
	return zenklav.NewConnections(zenklav.Connection{
		ID: sandboxSubdomain,
		Zendesk: zenklav.ZendeskSettings{
			Subdomain:      sandboxSubdomain,
			Email:          zendesktest.DefaultEmail,
			APIToken:       zendesktest.DefaultAPIToken,
			WebhookSecrets: []zenklav.Secret{sandboxSecret},
			Brands:         zenklav.Brands{All: true},
			App:            &zenklav.ZendeskApp{InstallationID: sandboxInstallation, PublicKey: sim.AppPublicKeyPEM()},
		},
		Klaviyo: zenklav.KlaviyoSettings{PrivateKey: sandboxKlaviyoKey, WebhookSecrets: []zenklav.Secret{sandboxKlaviyoSecret}},
		SMS:     zenklav.SMSSettings{Enabled: true, Brand: smsBrand},
	})
}

// seedKlaviyo gives the sandbox's first customer a full Klaviyo profile (consent,
// predictions, segments, lists and a few orders) so the sidebar has a card to show; the
// second has no profile, which shows the sidebar's empty state. The orders go through the
// Klaviyo client, as any event would.
func (sb *sandbox) seedKlaviyo(ctx context.Context, logger *slog.Logger) error {
	if len(sb.sample.Customers) < 2 {
		return nil
	}
	ana := sb.sample.Customers[0]
	now := time.Now().UTC()
	num := func(v float64) *float64 { return &v }
	next := now.AddDate(0, 0, 12)
	sb.klaviyo.SetProfileDetails(sandboxKlaviyoKey, ana.Email, klaviyotest.ProfileDetails{
		FirstName: "Ana", LastName: "Souza", Organization: "Northwind Outfitters",
		Location:     klaviyo.Location{City: "Lisbon", Country: "Portugal", Timezone: "Europe/Lisbon"},
		EmailConsent: &klaviyo.Consent{Consent: "SUBSCRIBED", CanReceive: true, Timestamp: now.AddDate(-1, -2, 0)},
		SMSConsent:   &klaviyo.Consent{Consent: "UNSUBSCRIBED", Timestamp: now.AddDate(0, -3, 0)},
		Predictive: &klaviyo.PredictiveAnalytics{
			PredictedCLV: num(412.5), HistoricCLV: num(689.9), TotalCLV: num(1102.4), ChurnProbability: num(0.18),
			AverageOrderValue: num(86.2), ExpectedDateOfNextOrder: &next,
		},
		Segments: []string{"VIP customers", "Outdoor enthusiasts"},
		Lists:    []string{"Newsletter", "Back in stock alerts"},
	})
	kc, err := klaviyo.NewClient(logger, klaviyo.ClientConfig{BaseURL: sb.klaviyoURL, PrivateKey: sandboxKlaviyoKey})
	if err != nil {
		return err
	}
	events := []klaviyo.Event{
		{Metric: "Placed Order", Properties: map[string]any{"$value": 129.9, "OrderId": "10482"}, Time: now.AddDate(0, 0, -9)},
		{Metric: "Viewed Product", Properties: map[string]any{"ProductName": "Storm rain jacket"}, Time: now.AddDate(0, 0, -10)},
		{Metric: "Placed Order", Properties: map[string]any{"$value": 64.5, "OrderId": "10117"}, Time: now.AddDate(0, -2, 0)},
	}
	for i := range events {
		events[i].Profile = klaviyo.Profile{Email: ana.Email}
		events[i].UniqueID = fmt.Sprintf("sandbox-seed-%d", i)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return errors.Join(kc.Deliver(ctx, events)...)
}

// serve serves a simulator on a loopback port of its own and returns its base URL.
func (sb *sandbox) serve(logger *slog.Logger, name string, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen for %s simulator: %w", name, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	sb.srvs = append(sb.srvs, srv)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("simulator stopped", "simulator", name, "err", err)
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

// finish points the simulator's webhooks at zenklav once its HTTP address is known.
func (sb *sandbox) finish(httpURL string) {
	if sb == nil {
		return
	}
	sb.webhook = httpURL + "/webhooks/zendesk/" + sandboxSubdomain
	// Every change to a ticket, an agent's reply in the agent view included
	// (ticket.comment_added), goes to zenklav, as the webhook an operator subscribes would.
	sb.sim.SetWebhookTarget(sb.webhook, sandboxSecret)
	// A text on the phone page goes to zenklav as Klaviyo's signed system webhook.
	sb.klaviyo.SetWebhookTarget(httpURL+"/webhooks/klaviyo/"+sandboxSubdomain, sandboxKlaviyoSecret)
	// httpURL is zenklav's own, http://host:port: a URL the simulator takes.
	_ = sb.sim.SetAppURL(httpURL + "/app/sidebar")
}

// phonePage is the Klaviyo simulator's phone, texting from sandboxTexter.
func (sb *sandbox) phonePage() string {
	return sb.klaviyoURL + "/sandbox/phone"
}

// agentIndex is the simulator's list of tickets, where tickets opened from texts appear.
func (sb *sandbox) agentIndex() string {
	return sb.url + "/agent/"
}

// agentPage is the simulator's ticket view of the first sample ticket, with the sidebar.
func (sb *sandbox) agentPage() string {
	if len(sb.sample.Tickets) == 0 {
		return sb.url + "/agent/"
	}
	return fmt.Sprintf("%s/agent/tickets/%d", sb.url, sb.sample.Tickets[0].ID)
}

func (sb *sandbox) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, srv := range sb.srvs {
		_ = srv.Shutdown(ctx)
	}
	sb.sim.Close()
	sb.klaviyo.Close()
}

// curlCommand is one shell command that signs a ticket.created webhook the way Zendesk does
// (base64 HMAC-SHA256 of timestamp + body) and posts it to zenklav.
func (sb *sandbox) curlCommand() string {
	ticket, requester := int64(1), int64(0)
	if len(sb.sample.Tickets) > 0 {
		ticket, requester = sb.sample.Tickets[0].ID, sb.sample.Tickets[0].RequesterID
	}
	body := fmt.Sprintf(`{"type":"zen:event-type:ticket.created","account_id":%d,"id":"'$(cat /proc/sys/kernel/random/uuid)'",`+
		`"time":"'$ts'","zendesk_event_version":"2022-11-06","subject":"zen:ticket:%d",`+
		`"detail":{"id":"%d","status":"NEW","subject":"Where is my order?","requester_id":"%d","via":{"channel":"web_form"}},"event":{}}`,
		zendesktest.DefaultAccountID, ticket, ticket, requester)
	return fmt.Sprintf(`ts=$(date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ); body='%s'; `+
		`curl -sS -X POST '%s' -H 'Content-Type: application/json' -H "X-Zendesk-Webhook-Signature-Timestamp: $ts" `+
		`-H "X-Zendesk-Webhook-Signature: $(printf '%%s' "$ts$body" | openssl dgst -sha256 -hmac '%s' -binary | base64)" -d "$body"; echo`,
		body, sb.webhook, sandboxSecret)
}
