package zendesk

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/apiclient"
)

// DefaultTimeout bounds one HTTP call when ClientConfig.Timeout is zero. Zendesk answers
// reads in well under a second; ten seconds leaves room for a slow moment without letting a
// stuck connection hold a pipeline worker.
const DefaultTimeout = 10 * time.Second

// maxIDsPerCall is Zendesk's limit for show_many endpoints.
const maxIDsPerCall = 100

// maxPages bounds pagination so a server that keeps sending next links cannot loop a caller
// forever; an account has far fewer than 100 pages of 100 brands.
const maxPages = 100

// maxBody bounds what the client reads from one answer.
const maxBody = 16 << 20

// ClientConfig configures a Client.
type ClientConfig struct {
	// BaseURL is the account's address, e.g. "https://acme.zendesk.com", or a simulator's.
	BaseURL string
	// Email and APIToken authenticate as "{email}/token" with the API token as password.
	Email    string
	APIToken string
	// Token, when set, authenticates instead with an OAuth access token (Bearer). It is
	// called for each request, so a token refreshed meanwhile is used at once.
	Token func(ctx context.Context) (string, error)
	// HTTPClient sends the requests; a new client on http.DefaultTransport when nil.
	HTTPClient *http.Client
	// Timeout bounds each HTTP call (each page of a paginated list); DefaultTimeout when 0.
	Timeout time.Duration
	// Metrics, when set, count the client's requests and keep its account's rate limit,
	// labelled with Connection: a name that is no secret (zenklav gives the connection's id).
	Metrics    *Metrics
	Connection string
}

// String keeps the API token out of anything that prints a config with %v.
func (c ClientConfig) String() string {
	return fmt.Sprintf("{BaseURL:%s Email:%s APIToken:[redacted] OAuth:%t Timeout:%s Connection:%s}", c.BaseURL, c.Email, c.Token != nil, c.Timeout, c.Connection)
}

// GoString keeps %#v from printing the token too.
func (c ClientConfig) GoString() string { return "zendesk.ClientConfig" + c.String() }

// LogValue keeps slog from printing the token.
func (c ClientConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", c.BaseURL),
		slog.String("email", c.Email),
		slog.String("api_token", "[redacted]"),
		slog.Bool("oauth", c.Token != nil),
		slog.Duration("timeout", c.Timeout),
		slog.String("connection", c.Connection),
	)
}

// Client calls the Zendesk Support API of one account. It is safe for concurrent use.
type Client struct {
	logger  *slog.Logger
	base    *url.URL
	user    string // "{email}/token"
	token   string
	bearer  func(context.Context) (string, error) // nil: Basic auth with user and token
	http    *http.Client
	timeout time.Duration
	metrics *Metrics // nil: none
	conn    string   // the connection's name in the metrics
	meCache          // the API user's id, for HasComment
}

// NewClient returns a client for the account at cfg.BaseURL.
func NewClient(logger *slog.Logger, cfg ClientConfig) (*Client, error) {
	if logger == nil {
		return nil, zenklav.Errorf(zenklav.EINVALID, "new zendesk client: logger is nil")
	}
	base, err := apiclient.ParseBase(cfg.BaseURL)
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EINVALID, err, "new zendesk client")
	}
	if cfg.Token == nil && (cfg.Email == "" || cfg.APIToken == "") {
		return nil, zenklav.Errorf(zenklav.EINVALID, "new zendesk client: email and api token, or an oauth token, are required")
	}
	if cfg.Timeout < 0 {
		return nil, zenklav.Errorf(zenklav.EINVALID, "new zendesk client: timeout %s is negative", cfg.Timeout)
	}
	c := &Client{
		logger:  logger,
		base:    base,
		user:    cfg.Email + "/token",
		token:   cfg.APIToken,
		bearer:  cfg.Token,
		http:    cfg.HTTPClient,
		timeout: cfg.Timeout,
		metrics: cfg.Metrics,
		conn:    cfg.Connection,
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// ShowTicket returns the ticket with the given id (Zendesk's Show Ticket). Ticket, the
// zenklav.Desk method, reads the same ticket as the sms role needs it.
func (c *Client) ShowTicket(ctx context.Context, id int64) (Ticket, error) {
	return getOne[Ticket](ctx, c, "ticket", "/api/v2/tickets/", id)
}

// User returns the user with the given id.
func (c *Client) User(ctx context.Context, id int64) (User, error) {
	return getOne[User](ctx, c, "user", "/api/v2/users/", id)
}

// Group returns the group with the given id.
func (c *Client) Group(ctx context.Context, id int64) (Group, error) {
	return getOne[Group](ctx, c, "group", "/api/v2/groups/", id)
}

// getOne fetches one object by id; Zendesk wraps it under its kind: {"ticket": {…}}.
func getOne[T any](ctx context.Context, c *Client, kind, path string, id int64) (T, error) {
	var zero T
	var body map[string]json.RawMessage
	op := fmt.Sprintf("get %s %d", kind, id)
	if err := c.get(ctx, op, c.endpoint(path+strconv.FormatInt(id, 10), nil), &body); err != nil {
		return zero, err
	}
	raw, ok := body[kind]
	if !ok || string(raw) == "null" {
		return zero, zenklav.Errorf(zenklav.EUNAVAILABLE, "%s: answer has no %s", op, kind)
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return zero, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s: decode answer", op)
	}
	return v, nil
}

// UsersMany returns the users with the given ids, in as few calls as Zendesk's limit of 100
// ids per call allows. Like Zendesk, it leaves out ids that match no user rather than
// failing, so callers compare what they asked for with what came back.
func (c *Client) UsersMany(ctx context.Context, ids []int64) ([]User, error) {
	return showMany[User](ctx, c, "users", "/api/v2/users/show_many", ids)
}

// TicketsMany returns the tickets with the given ids the way UsersMany returns users.
func (c *Client) TicketsMany(ctx context.Context, ids []int64) ([]Ticket, error) {
	return showMany[Ticket](ctx, c, "tickets", "/api/v2/tickets/show_many", ids)
}

// showMany fetches objects by id from a show_many endpoint, 100 ids a call; Zendesk lists
// them under their plural kind: {"users": […]}.
func showMany[T any](ctx context.Context, c *Client, kind, path string, ids []int64) ([]T, error) {
	var out []T
	for start := 0; start < len(ids); start += maxIDsPerCall {
		chunk := ids[start:min(start+maxIDsPerCall, len(ids))]
		s := make([]string, len(chunk))
		for i, id := range chunk {
			s[i] = strconv.FormatInt(id, 10)
		}
		var body map[string]json.RawMessage
		q := url.Values{"ids": {strings.Join(s, ",")}}
		if err := c.get(ctx, fmt.Sprintf("get %d %s", len(chunk), kind), c.endpoint(path, q), &body); err != nil {
			return nil, err
		}
		var page []T
		if err := json.Unmarshal(body[kind], &page); err != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "get %d %s: decode answer", len(chunk), kind)
		}
		out = append(out, page...)
	}
	return out, nil
}

// endpoint returns the URL of path (and query) on the account.
func (c *Client) endpoint(path string, q url.Values) string {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawPath = ""
	u.RawQuery = q.Encode()
	return u.String()
}

// follow turns a pagination link into a URL on the configured base. Only the link's query
// (the cursor or page) is kept: the credentials go to the configured host and nowhere else,
// and a base URL that points at a proxy keeps working although Zendesk's links name the
// account's own host.
func (c *Client) follow(path, link string) (string, error) {
	if link == "" {
		return "", nil
	}
	u, err := url.Parse(link)
	if err != nil {
		return "", err
	}
	if !strings.HasSuffix(u.Path, path) && !strings.HasSuffix(u.Path, path+".json") {
		return "", fmt.Errorf("link %q leaves %s", link, path)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", err
	}
	return c.endpoint(path, q), nil
}

// get sends an authenticated GET to rawURL and decodes a 2xx JSON answer into out. op names
// the call in errors ("get ticket 42").
func (c *Client) get(ctx context.Context, op, rawURL string, out any) error {
	_, err := c.do(ctx, op, http.MethodGet, rawURL, nil, nil, out)
	return err
}

// do sends an authenticated request, with in as its JSON body unless nil and header added,
// and decodes a 2xx JSON answer into out unless out is nil. It returns the answer's
// headers.
func (c *Client) do(ctx context.Context, op, method, rawURL string, in any, header http.Header, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, zenklav.Wrap(zenklav.EINTERNAL, err, "%s: encode request", op)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EINTERNAL, err, "%s: build request", op)
	}
	if err := c.authorize(ctx, op, req); err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "zenklav")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	status, respHeader, respBody, err := apiclient.Send(c.http, c.logger, "zendesk", op, req, c.timeout, maxBody+1)
	c.metrics.answered(c.conn, apiclient.Outcome(status, err), respHeader)
	if err != nil {
		return nil, err
	}
	if len(respBody) > maxBody {
		return nil, zenklav.Errorf(zenklav.EUNAVAILABLE, "%s: answer larger than %d bytes", op, maxBody)
	}
	if status < 200 || status > 299 {
		apiErr := newAPIError(status, respHeader, respBody)
		return respHeader, apiclient.Failure(op, status, kindOf(status), apiErr, apiErr.RetryAfter, apiErr.Response())
	}
	if out == nil {
		return respHeader, nil
	}
	if err := json.Unmarshal(respBody, out); err != nil {
		// A 2xx that is not our JSON comes from something in between (a proxy's error
		// page) more often than from Zendesk itself, so it is worth a retry.
		return respHeader, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s: decode answer", op)
	}
	return respHeader, nil
}

// authorize sets the request's credentials: the OAuth access token of the moment when the
// client has one, else the API token.
func (c *Client) authorize(ctx context.Context, op string, req *http.Request) error {
	if c.bearer == nil {
		req.SetBasicAuth(c.user, c.token)
		return nil
	}
	token, err := c.bearer(ctx)
	if err != nil {
		// The token source decides the kind: a refused refresh is unauthorized, a failed
		// one unavailable.
		return fmt.Errorf("%s: oauth token: %w", op, err)
	}
	if token == "" {
		return zenklav.Errorf(zenklav.EUNAUTHORIZED, "%s: no oauth access token: reconnect Zendesk", op)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return nil
}

// kindOf maps a Zendesk status to an error kind: a lookup by id that finds nothing is
// not_found, which callers tell apart; the rest is what every API client decides.
func kindOf(status int) string {
	if status == http.StatusNotFound {
		return zenklav.ENOTFOUND
	}
	return apiclient.Kind(status)
}

// APIError is an answer from Zendesk other than 2xx. The client returns it wrapped in a
// *zenklav.Error whose kind follows the status, and which says itself whether it was
// throttled and what wait Zendesk asked for (zenklav.Throttled, zenklav.RetryAfter); reach
// the APIError with errors.As.
type APIError struct {
	StatusCode  int
	Code        string        // Zendesk's error code or title, e.g. "RecordNotFound"
	Description string        // Zendesk's explanation, when it gave one
	RetryAfter  time.Duration // from the Retry-After header; 0 when absent
	// Details are the field errors of a 422 RecordInvalid, by field: {"email":
	// [{"error":"DuplicateValue","description":"…"}]}.
	Details map[string][]FieldError
}

// FieldError is one validation error of a field in a 422 answer.
type FieldError struct {
	Error       string `json:"error"`
	Description string `json:"description"`
}

// Response is the answer in short, for a dead letter: the status, Zendesk's code and
// description, and the field errors.
func (e *APIError) Response() string {
	b, err := json.Marshal(map[string]any{"status": e.StatusCode, "error": e.Code, "description": e.Description, "details": e.Details})
	if err != nil {
		return strconv.Itoa(e.StatusCode)
	}
	return string(b)
}

// has reports whether a field error of field has the code, or mentions it in its
// description, case-insensitively.
func (e *APIError) has(field, code string) bool {
	for _, fe := range e.Details[field] {
		if strings.EqualFold(fe.Error, code) || strings.Contains(strings.ToLower(fe.Description), strings.ToLower(code)) {
			return true
		}
	}
	return false
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "zendesk answered %d", e.StatusCode)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func newAPIError(status int, header http.Header, body []byte) *APIError {
	e := &APIError{StatusCode: status, RetryAfter: apiclient.RetryAfter(header.Get("Retry-After"), time.Now())}
	// Zendesk uses several error shapes: {"error":"RecordNotFound","description":"Not
	// found"}, {"error":{"title":…,"message":…}} and {"errors":[{"code":…,"title":…}]}.
	var shape struct {
		Error       json.RawMessage            `json:"error"`
		Description string                     `json:"description"`
		Details     map[string]json.RawMessage `json:"details"`
		Errors      []struct {
			Code   string `json:"code"`
			Title  string `json:"title"`
			Detail string `json:"detail"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &shape) != nil {
		return e
	}
	e.Description = shape.Description
	e.Details = fieldErrors(shape.Details)
	var title string
	var obj struct {
		Title   string `json:"title"`
		Message string `json:"message"`
	}
	switch {
	case json.Unmarshal(shape.Error, &title) == nil && title != "":
		e.Code = title
	case json.Unmarshal(shape.Error, &obj) == nil && obj.Title != "":
		e.Code, e.Description = obj.Title, cmp.Or(e.Description, obj.Message)
	case len(shape.Errors) > 0:
		first := shape.Errors[0]
		e.Code = cmp.Or(first.Code, first.Title)
		e.Description = cmp.Or(e.Description, first.Detail, first.Title)
	}
	return e
}

// fieldErrors reads the details of a 422: Zendesk sends each field's errors as a list, but
// some answers (and its documentation's examples) carry a single object.
func fieldErrors(details map[string]json.RawMessage) map[string][]FieldError {
	if len(details) == 0 {
		return nil
	}
	out := make(map[string][]FieldError, len(details))
	for field, raw := range details {
		var list []FieldError
		if json.Unmarshal(raw, &list) != nil {
			var one FieldError
			if json.Unmarshal(raw, &one) != nil {
				continue
			}
			list = []FieldError{one}
		}
		out[field] = list
	}
	return out
}
