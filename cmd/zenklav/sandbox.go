package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/zenklav/zenklav/config"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// Sandbox mode: with no connections file, `zenklav all` runs against an in-process Zendesk
// simulator with one connection, so a newcomer can watch webhooks flow without any account.
const (
	sandboxSubdomain = "sandbox"
	// sandboxSecret signs the sandbox's webhooks. It protects nothing real, which is why it
	// may be printed.
	sandboxSecret = "sandbox-webhook-signing-secret"
	// sandboxKlaviyoKey is the sandbox's Klaviyo account: a simulator's, worthless elsewhere.
	sandboxKlaviyoKey = "pk_sandbox_zenklav"
)

type sandbox struct {
	url        string // the Zendesk simulator's base URL
	klaviyoURL string // the Klaviyo simulator's base URL
	webhook    string // zenklav's webhook URL for the sandbox connection
	sim        *zendesktest.Server
	klaviyo    *klaviyotest.Server
	sample     zendesktest.Sample
	srvs       []*http.Server
	conns      *config.Connections
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
	ksim.AddAccount(sandboxKlaviyoKey)
	conns, err := config.NewConnections(config.Connection{
		ID: sandboxSubdomain,
		Zendesk: config.Zendesk{
			Subdomain:      sandboxSubdomain,
			Email:          zendesktest.DefaultEmail,
			APIToken:       zendesktest.DefaultAPIToken,
			WebhookSecrets: []config.Secret{sandboxSecret},
			Brands:         config.Brands{All: true},
		},
		Klaviyo: config.Klaviyo{PrivateKey: sandboxKlaviyoKey},
	})
	if err != nil {
		return nil, err
	}
	sb := &sandbox{sim: sim, klaviyo: ksim, sample: sim.Seed(), conns: conns}
	if sb.url, err = sb.serve(logger, "zendesk", sim); err != nil {
		sb.Close()
		return nil, err
	}
	if sb.klaviyoURL, err = sb.serve(logger, "klaviyo", ksim); err != nil {
		sb.Close()
		return nil, err
	}
	return sb, nil
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
	sb.sim.SetWebhookTarget(sb.webhook, sandboxSecret)
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
