// Package klaviyo is a client for the parts of Klaviyo's API that zenklav uses: creating
// events, one at a time or in bulk, importing profiles, reading what the agent sidebar shows
// of a profile (read.go), and making a connection's system webhook (admin.go). It
// authenticates with the account's private key or with the access token of an OAuth grant,
// which OAuth (oauth.go) obtains and renews. It speaks JSON:API at the revision pinned in
// Revision and turns Klaviyo's error answers into zenklav error kinds, so the pipeline knows
// what to retry.
package klaviyo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/apiclient"
)

// Revision is the API revision every request asks for. Klaviyo requires the header on
// every call; pinning it keeps a new revision from changing answers under us.
const Revision = "2026-07-15"

// MediaType is JSON:API's media type, which Klaviyo uses for requests and answers.
const MediaType = "application/vnd.api+json"

// DefaultTimeout bounds one HTTP call when ClientConfig.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// MaxBulkEvents is the most events Klaviyo accepts in one bulk create request.
const MaxBulkEvents = 1000

// MaxPayloadBytes is the largest request body Klaviyo accepts: "5MB", read as the smaller
// decimal megabytes.
const MaxPayloadBytes = 5_000_000

// MaxStringBytes is the longest string Klaviyo accepts in an event ("100KB", decimal).
const MaxStringBytes = 100_000

// maxBody bounds what the client reads from one answer; Klaviyo's answers to event
// creation are empty or a short error list.
const maxBody = 1 << 20

// ClientConfig configures a Client.
type ClientConfig struct {
	// BaseURL is Klaviyo's address, "https://a.klaviyo.com", or a simulator's.
	BaseURL string
	// PrivateKey is the account's private API key ("pk_…"). Give it or Token, not both.
	PrivateKey string
	// Token returns the access token of the account's OAuth grant (Authorization: Bearer),
	// used instead of PrivateKey. The client asks for it before each request, once the
	// request's rate limit let it go, so that a token the caller refreshed is used at once.
	// Its error keeps its kind (an unauthorized grant stays EUNAUTHORIZED); an error of no
	// zenklav kind is EUNAVAILABLE.
	Token func(ctx context.Context) (string, error)
	// HTTPClient sends the requests; a new client on http.DefaultTransport when nil.
	HTTPClient *http.Client
	// Timeout bounds each HTTP call; DefaultTimeout when 0.
	Timeout time.Duration
	// Metrics, when set, count the client's requests and show its rate limits, labelled
	// with Account: a name for the account that is no secret (zenklav gives a connection
	// id). A later client of the same Account takes the earlier one's place in the gauges.
	Metrics *Metrics
	Account string
}

// String keeps the private key out of anything that prints a config with %v.
func (c ClientConfig) String() string {
	return fmt.Sprintf("{BaseURL:%s PrivateKey:[redacted] Token:%s Timeout:%s Account:%s}", c.BaseURL, c.tokenState(), c.Timeout, c.Account)
}

// tokenState says whether a Token function is set, without calling it.
func (c ClientConfig) tokenState() string {
	if c.Token == nil {
		return "none"
	}
	return "set"
}

// GoString keeps the private key out of %#v.
func (c ClientConfig) GoString() string { return "klaviyo.ClientConfig" + c.String() }

// LogValue keeps the private key out of logs.
func (c ClientConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", c.BaseURL),
		slog.String("private_key", "[redacted]"),
		slog.String("token", c.tokenState()),
		slog.Duration("timeout", c.Timeout),
		slog.String("account", c.Account),
	)
}

// Profile identifies the person an event is about. Klaviyo needs at least one identifier.
type Profile = zenklav.ProfileKey

// Event is one event to record in Klaviyo.
type Event = zenklav.MetricEvent

// validateEvent reports what Klaviyo would refuse in e before it is sent.
func validateEvent(e Event) error {
	if strings.TrimSpace(e.Metric) == "" {
		return errors.New("metric name is empty")
	}
	if n := utf8.RuneCountInString(e.Metric); n >= 128 {
		return fmt.Errorf("metric name is %d characters; Klaviyo allows fewer than 128", n)
	}
	return validateProfile(e.Profile)
}

// Client calls Klaviyo's API for one account. It is safe for concurrent use.
type Client struct {
	logger  *slog.Logger
	base    *url.URL
	key     string                                    // the private key, or "" when token is set
	token   func(ctx context.Context) (string, error) // the OAuth grant's access token
	http    *http.Client
	timeout time.Duration
	buckets map[string]*bucket // by path: the account's rate limits, one bucket per endpoint
	shared  atomic.Int64       // ShareLimits's n
	metrics *Metrics           // nil: none
	account string             // the account's name in the metrics
}

// ShareLimits makes the client keep to 1/n of the account's rate limits, for when n
// processes deliver to the account at once (the emitter's replicas, each with a share of
// every account's tickets): together they stay inside the limits. 1 is the whole limit.
func (c *Client) ShareLimits(n int) {
	n = max(n, 1)
	c.shared.Store(int64(n))
	for _, b := range c.buckets {
		b.share(n)
	}
}

// NewClient returns a client for the account whose private key is cfg.PrivateKey, or whose
// OAuth grant cfg.Token gives the access token of.
func NewClient(logger *slog.Logger, cfg ClientConfig) (*Client, error) {
	if logger == nil {
		return nil, zenklav.Errorf(zenklav.EINVALID, "new klaviyo client: logger is nil")
	}
	base, err := apiclient.ParseBase(cfg.BaseURL)
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EINVALID, err, "new klaviyo client")
	}
	if (cfg.PrivateKey == "") == (cfg.Token == nil) {
		return nil, zenklav.Errorf(zenklav.EINVALID, "new klaviyo client: give a private key or an OAuth token, one of the two")
	}
	if cfg.Timeout < 0 {
		return nil, zenklav.Errorf(zenklav.EINVALID, "new klaviyo client: timeout %s is negative", cfg.Timeout)
	}
	c := &Client{logger: logger, base: base, key: cfg.PrivateKey, token: cfg.Token, http: cfg.HTTPClient, timeout: cfg.Timeout,
		buckets: make(map[string]*bucket, len(limitsByPath)), metrics: cfg.Metrics, account: cfg.Account}
	c.shared.Store(1)
	for path, l := range limitsByPath {
		c.buckets[path] = newBucket(l)
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	c.metrics.add(c)
	return c, nil
}

// CreateEvent records one event (POST /api/events). Klaviyo answers 202: the event is
// valid and queued, not necessarily processed.
func (c *Client) CreateEvent(ctx context.Context, e Event) error {
	const op = "create event"
	if err := validateEvent(e); err != nil {
		return zenklav.Wrap(zenklav.EINVALID, err, "%s", op)
	}
	attrs := eventAttributes(e)
	attrs.Profile = &profileRef{Data: profileObject(e.Profile)}
	body := map[string]any{"data": map[string]any{"type": "event", "attributes": attrs}}
	return c.post(ctx, op, "/api/events", body)
}

// BulkCreateEvents records up to MaxBulkEvents events in one request
// (POST /api/event-bulk-create-jobs). Klaviyo groups events by profile, so events of the
// same profile share one entry; Klaviyo answers 202 and offers no way to follow the job.
func (c *Client) BulkCreateEvents(ctx context.Context, events []Event) error {
	op := fmt.Sprintf("bulk create %d events", len(events))
	if len(events) == 0 {
		return zenklav.Errorf(zenklav.EINVALID, "%s: no events", op)
	}
	if len(events) > MaxBulkEvents {
		return zenklav.Errorf(zenklav.EINVALID, "%s: Klaviyo accepts at most %d per request", op, MaxBulkEvents)
	}
	var entries []bulkEntry
	index := map[Profile]int{}
	// Klaviyo refuses a whole bulk request that repeats a unique_id. At-least-once delivery
	// makes an exact repeat normal (Klaviyo would keep the first anyway), so it is dropped
	// here; a unique_id reused for another profile or metric is a bug, and refused.
	type key struct {
		profile Profile
		metric  string
	}
	seen := map[string]key{}
	for i, e := range events {
		if err := validateEvent(e); err != nil {
			return zenklav.Wrap(zenklav.EINVALID, err, "%s: event %d", op, i)
		}
		if e.UniqueID != "" {
			k := key{e.Profile, e.Metric}
			if prev, ok := seen[e.UniqueID]; ok {
				if prev == k {
					continue
				}
				return zenklav.Errorf(zenklav.EINVALID, "%s: unique_id %q is used by two different events", op, e.UniqueID)
			}
			seen[e.UniqueID] = k
		}
		n, ok := index[e.Profile]
		if !ok {
			n = len(entries)
			index[e.Profile] = n
			entries = append(entries, bulkEntry{Type: "event-bulk-create"})
			entries[n].Attributes.Profile.Data = profileObject(e.Profile)
		}
		ev := bulkEvent{Type: "event", Attributes: eventAttributes(e)}
		entries[n].Attributes.Events.Data = append(entries[n].Attributes.Events.Data, ev)
	}
	body := map[string]any{"data": map[string]any{
		"type": "event-bulk-create-job",
		"attributes": map[string]any{
			"events-bulk-create": map[string]any{"data": entries},
		},
	}}
	return c.post(ctx, op, "/api/event-bulk-create-jobs", body)
}

// Wire shapes of EventCreateQueryV2 and EventsBulkCreateJob in Klaviyo's OpenAPI document.
type (
	attributes struct {
		Properties map[string]any `json:"properties"`
		Metric     metricRef      `json:"metric"`
		Profile    *profileRef    `json:"profile,omitempty"` // single create only
		Time       string         `json:"time,omitempty"`
		Value      *float64       `json:"value,omitempty"`
		UniqueID   string         `json:"unique_id,omitempty"`
		Backfill   bool           `json:"backfill,omitempty"`
	}
	metricRef struct {
		Data struct {
			Type       string `json:"type"`
			Attributes struct {
				Name string `json:"name"`
			} `json:"attributes"`
		} `json:"data"`
	}
	profileRef struct {
		Data profileData `json:"data"`
	}
	profileData struct {
		Type       string            `json:"type"`
		Attributes map[string]string `json:"attributes"`
	}
	bulkEvent struct {
		Type       string     `json:"type"`
		Attributes attributes `json:"attributes"`
	}
	bulkEntry struct {
		Type       string `json:"type"`
		Attributes struct {
			Profile profileRef `json:"profile"`
			Events  struct {
				Data []bulkEvent `json:"data"`
			} `json:"events"`
		} `json:"attributes"`
	}
)

func eventAttributes(e Event) attributes {
	a := attributes{Properties: e.Properties, Value: e.Value, UniqueID: e.UniqueID, Backfill: e.Backfill}
	if a.Properties == nil {
		a.Properties = map[string]any{} // required, even when empty
	}
	a.Metric.Data.Type = "metric"
	a.Metric.Data.Attributes.Name = e.Metric
	if !e.Time.IsZero() {
		a.Time = e.Time.UTC().Format(time.RFC3339)
	}
	return a
}

func profileObject(p Profile) profileData {
	attrs := map[string]string{}
	if p.Email != "" {
		attrs["email"] = p.Email
	}
	if p.PhoneNumber != "" {
		attrs["phone_number"] = p.PhoneNumber
	}
	if p.ExternalID != "" {
		attrs["external_id"] = p.ExternalID
	}
	return profileData{Type: "profile", Attributes: attrs}
}

// post sends body as JSON:API to path and expects a 2xx answer, whose body is ignored. It
// waits for the endpoint's rate limit first, so callers may send as fast as they like.
func (c *Client) post(ctx context.Context, op, path string, body any) error {
	payload, err := json.Marshal(body)
	if err != nil {
		return zenklav.Wrap(zenklav.EINVALID, err, "%s: encode body", op)
	}
	if len(payload) > MaxPayloadBytes {
		return zenklav.Errorf(zenklav.ETOOLARGE, "%s: body is %d bytes; Klaviyo accepts at most %d", op, len(payload), MaxPayloadBytes)
	}
	_, err = c.do(ctx, op, http.MethodPost, path, path, nil, payload, maxBody)
	return err
}

// do sends one request and returns the body of a 2xx answer, read up to limit bytes. It
// waits for the rate limit of the bucket named bucketKey first, and turns any other answer
// into an error of the kind that says what to do next, with Klaviyo's error list.
func (c *Client) do(ctx context.Context, op, method, bucketKey, path string, query url.Values, payload []byte, limit int64) ([]byte, error) {
	b, endpoint := c.buckets[bucketKey], bucketKey
	if b == nil {
		endpoint = "other" // every call names a bucket; this keeps the label's values bounded if one does not
	} else {
		start := time.Now()
		err := b.wait(ctx)
		c.metrics.waitedFor(c.account, endpoint, time.Since(start))
		if err != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s: wait for the rate limit", op)
		}
	}
	u := *c.base
	u.Path = c.base.Path + path
	u.RawPath = ""
	u.RawQuery = query.Encode()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EINTERNAL, err, "%s: build request", op)
	}
	auth, err := c.authorization(ctx, op)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("revision", Revision)
	req.Header.Set("Accept", MediaType)
	if payload != nil {
		req.Header.Set("Content-Type", MediaType)
	}
	req.Header.Set("User-Agent", "zenklav")
	status, header, answer, err := apiclient.Send(c.http, c.logger, "klaviyo", op, req, c.timeout, limit)
	c.metrics.sent(c.account, endpoint, apiclient.Outcome(status, err))
	if err != nil {
		return nil, err
	}
	if status >= 200 && status <= 299 {
		if b != nil {
			b.succeeded()
		}
		return answer, nil
	}
	apiErr := newAPIError(status, header, answer)
	if status == http.StatusTooManyRequests && b != nil {
		b.throttled(apiErr.RetryAfter)
	}
	kind := apiclient.Kind(status)
	if status == http.StatusNotFound && method == http.MethodGet {
		// For a read, unlike a write, a 404 is an answer: no such profile.
		kind = zenklav.ENOTFOUND
	}
	return nil, apiclient.Failure(op, status, kind, apiErr, apiErr.RetryAfter, apiErr.Response())
}

// authorization is the Authorization header of a request: the private key, or the OAuth
// grant's access token as it is now.
func (c *Client) authorization(ctx context.Context, op string) (string, error) {
	if c.token == nil {
		return "Klaviyo-API-Key " + c.key, nil
	}
	tok, err := c.token(ctx)
	if err == nil && tok == "" {
		err = zenklav.Errorf(zenklav.EUNAUTHORIZED, "the OAuth grant gave an empty access token")
	}
	if err != nil {
		kind := zenklav.EUNAVAILABLE
		var ze *zenklav.Error
		if errors.As(err, &ze) {
			kind = ze.Code
		}
		return "", zenklav.Wrap(kind, err, "%s: access token", op)
	}
	return "Bearer " + tok, nil
}

// ErrorDetail is one entry of Klaviyo's JSON:API error list. Klaviyo also sends each
// entry's status, which the spec does not declare; APIError.StatusCode has it.
type ErrorDetail struct {
	ID     string `json:"id"`
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Source struct {
		Pointer   string `json:"pointer"`
		Parameter string `json:"parameter"`
	} `json:"source"`
}

// APIError is an answer from Klaviyo other than 2xx. The client returns it wrapped in a
// *zenklav.Error whose kind follows the status, and which says itself whether it was
// throttled, what wait Klaviyo asked for and the answer in short (zenklav.Throttled,
// zenklav.RetryAfter, zenklav.Response); reach the APIError with errors.As.
type APIError struct {
	StatusCode int
	Errors     []ErrorDetail // Klaviyo's error list; empty when the body was not JSON:API
	RetryAfter time.Duration // from the Retry-After header; 0 when absent
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "klaviyo answered %d", e.StatusCode)
	if len(e.Errors) > 0 {
		first := e.Errors[0]
		if first.Code != "" {
			b.WriteString(" " + first.Code)
		}
		if first.Detail != "" {
			b.WriteString(": " + first.Detail)
		} else if first.Title != "" {
			b.WriteString(": " + first.Title)
		}
		if first.Source.Pointer != "" {
			b.WriteString(" (at " + first.Source.Pointer + ")")
		}
		if len(e.Errors) > 1 {
			fmt.Fprintf(&b, " and %d more", len(e.Errors)-1)
		}
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Throttled reports whether the answer was a rate limit's refusal (429).
func (e *APIError) Throttled() bool { return e.StatusCode == http.StatusTooManyRequests }

// Response is the answer in short, for a dead letter's headers: the status and Klaviyo's
// error list as JSON.
func (e *APIError) Response() string {
	b, err := json.Marshal(map[string]any{"status": e.StatusCode, "errors": e.Errors})
	if err != nil {
		return strconv.Itoa(e.StatusCode)
	}
	return string(b)
}

func newAPIError(status int, header http.Header, body []byte) *APIError {
	e := &APIError{StatusCode: status, RetryAfter: apiclient.RetryAfter(header.Get("Retry-After"), time.Now())}
	var shape struct {
		Errors []ErrorDetail `json:"errors"`
	}
	if json.Unmarshal(body, &shape) == nil {
		e.Errors = shape.Errors
	}
	return e
}
