package zendesktest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The Webhooks API (/api/v2/webhooks) is not in Zendesk's OpenAPI document, so the
// simulator checks its requests by hand, as its API reference describes them, and answers
// its refusals in its own error shape ({"errors": [{code, title, detail}]}). An active
// webhook that subscribes to event types gets those events, signed with its own secret,
// besides the target of SetWebhookTarget: a connection set up through the API receives
// events with nothing else configured.

// Webhook is a webhook of the simulated account.
type Webhook struct {
	ID            string
	Name          string
	Description   string
	Endpoint      string
	HTTPMethod    string
	RequestFormat string
	Status        string   // active or inactive
	Subscriptions []string // zen:event-type:… or conditional_ticket_events
	SigningSecret string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Webhooks returns the account's webhooks, oldest first.
func (s *Server) Webhooks() []Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.webhooksLocked()
}

// webhooksLocked returns copies of the webhooks, oldest first (their ids sort by
// creation). The caller holds s.mu.
func (s *Server) webhooksLocked() []Webhook {
	out := make([]Webhook, 0, len(s.admin.webhooks))
	for _, w := range s.admin.webhooks {
		w.Subscriptions = slices.Clone(w.Subscriptions)
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b Webhook) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// webhookInput is what a create or update may give. Other fields are refused, as the
// Webhooks API validates its bodies against a schema.
type webhookInput struct {
	Name           *string         `json:"name"`
	Description    *string         `json:"description"`
	Endpoint       *string         `json:"endpoint"`
	HTTPMethod     *string         `json:"http_method"`
	RequestFormat  *string         `json:"request_format"`
	Status         *string         `json:"status"`
	Subscriptions  *[]string       `json:"subscriptions"`
	Authentication json.RawMessage `json:"authentication"`
	CustomHeaders  json.RawMessage `json:"custom_headers"`
	SigningSecret  json.RawMessage `json:"signing_secret"`
	ExternalSource json.RawMessage `json:"external_source"`
}

func webhookError(status int, code, detail string) (int, any) {
	return status, map[string]any{"errors": []map[string]string{{"code": code, "title": http.StatusText(status), "detail": detail}}}
}

// serveWebhooks answers the Webhooks API:
//
//	GET, POST               /api/v2/webhooks
//	GET, PUT, PATCH, DELETE /api/v2/webhooks/{id}
//	GET, POST               /api/v2/webhooks/{id}/signing_secret  (POST resets it)
func (s *Server) serveWebhooks(w http.ResponseWriter, r *http.Request) {
	if s.refuseBearer(w, r) {
		return
	}
	if _, bearer := bearerToken(r); !bearer && s.checkBasic(r) != nil {
		refusals.Unauthenticated(w)
		return
	}
	if !s.allow(w) {
		writeJSON(w, http.StatusTooManyRequests, errorBody("TooManyRequests", "Rate limit exceeded; retry after the number of seconds in Retry-After"))
		return
	}
	id, sub, _ := strings.Cut(strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/v2/webhooks"), "/"), "/")
	var status int
	var body any
	switch {
	case id == "" && r.Method == http.MethodGet:
		status, body = s.listWebhooks(r)
	case id == "" && r.Method == http.MethodPost:
		status, body = s.createWebhook(r)
	case id != "" && sub == "" && slices.Contains([]string{http.MethodGet, http.MethodPut, http.MethodPatch, http.MethodDelete}, r.Method):
		status, body = s.oneWebhook(r, id)
	case id != "" && sub == "signing_secret" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		status, body = s.signingSecret(r, id)
	case id != "" && sub != "" && sub != "signing_secret":
		status, body = webhookError(http.StatusNotFound, "NotFound", "no such path of the Webhooks API")
	default:
		status, body = webhookError(http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" is not a method of "+r.URL.Path)
	}
	writeJSON(w, status, body)
}

// readWebhook decodes {"webhook": {…}}.
func readWebhook(r *http.Request) (webhookInput, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return webhookInput{}, err
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(raw, &outer); err != nil {
		return webhookInput{}, fmt.Errorf("the body is not JSON: %v", err)
	}
	inner, ok := outer["webhook"]
	if !ok || len(outer) != 1 {
		return webhookInput{}, fmt.Errorf(`the body must be {"webhook": {…}}`)
	}
	var in webhookInput
	dec := json.NewDecoder(bytes.NewReader(inner))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return webhookInput{}, fmt.Errorf("webhook: %v", err)
	}
	return in, nil
}

// apply sets what in gives on w. With full (a create or a PUT) every required field must
// be given.
func (in webhookInput) apply(w *Webhook, full bool) error {
	fields := []struct {
		name string
		v    *string
		dst  *string
	}{
		{"name", in.Name, &w.Name}, {"endpoint", in.Endpoint, &w.Endpoint}, {"http_method", in.HTTPMethod, &w.HTTPMethod},
		{"request_format", in.RequestFormat, &w.RequestFormat}, {"status", in.Status, &w.Status},
	}
	for _, f := range fields {
		switch {
		case f.v != nil:
			*f.dst = *f.v
		case full:
			return fmt.Errorf("%s is required", f.name)
		}
	}
	if in.Subscriptions != nil {
		w.Subscriptions = slices.Clone(*in.Subscriptions)
	} else if full {
		return fmt.Errorf("subscriptions is required")
	}
	if in.Description != nil {
		w.Description = *in.Description
	}
	if len(in.Authentication) > 0 || len(in.CustomHeaders) > 0 || len(in.ExternalSource) > 0 {
		return fmt.Errorf("zendesktest does not simulate authentication, custom_headers or external_source")
	}
	return nil
}

// checkWebhook says what Zendesk refuses in w: an event-subscribed webhook must POST JSON,
// and conditional_ticket_events (a trigger's or automation's webhook) stands alone.
func checkWebhook(w Webhook) error {
	u, err := url.Parse(w.Endpoint)
	switch {
	case strings.TrimSpace(w.Name) == "":
		return fmt.Errorf("name cannot be blank")
	case err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "":
		return fmt.Errorf("endpoint must be an absolute http(s) URL")
	case !isOneOf(w.HTTPMethod, "GET", "POST", "PUT", "PATCH", "DELETE"):
		return fmt.Errorf("http_method must be GET, POST, PUT, PATCH or DELETE")
	case !isOneOf(w.RequestFormat, "json", "xml", "form_encoded"):
		return fmt.Errorf("request_format must be json, xml or form_encoded")
	case !isOneOf(w.Status, "active", "inactive"):
		return fmt.Errorf("status must be active or inactive")
	case len(w.Subscriptions) == 0:
		return fmt.Errorf("subscriptions cannot be empty")
	case slices.Contains(w.Subscriptions, "conditional_ticket_events"):
		if len(w.Subscriptions) != 1 {
			return fmt.Errorf("conditional_ticket_events cannot be combined with event subscriptions")
		}
		return nil
	}
	for _, sub := range w.Subscriptions {
		if !strings.HasPrefix(sub, eventTypePrefix) || len(sub) == len(eventTypePrefix) {
			return fmt.Errorf("subscription %q is not an event type (zen:event-type:…)", sub)
		}
	}
	if w.HTTPMethod != "POST" || w.RequestFormat != "json" {
		return fmt.Errorf("a webhook subscribed to events must use http_method POST and request_format json")
	}
	return nil
}

// createWebhook answers Create Or Clone Webhook (201) with a new signing secret.
func (s *Server) createWebhook(r *http.Request) (int, any) {
	in, err := readWebhook(r)
	if err != nil {
		return webhookError(http.StatusBadRequest, "InvalidInput", err.Error())
	}
	var w Webhook
	if err := in.apply(&w, true); err != nil {
		return webhookError(http.StatusBadRequest, "InvalidInput", err.Error())
	}
	if err := checkWebhook(w); err != nil {
		return webhookError(http.StatusBadRequest, "InvalidInput", err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w.ID = s.webhookIDLocked()
	w.SigningSecret = newSigningSecret()
	w.CreatedAt = s.now().UTC().Truncate(time.Second)
	w.UpdatedAt = w.CreatedAt
	s.admin.webhooks[w.ID] = w
	return http.StatusCreated, map[string]any{"webhook": webhookJSON(w)}
}

// oneWebhook answers Show (200), Update (PUT, 204), Patch (PATCH, 204) and Delete (204)
// Webhook.
func (s *Server) oneWebhook(r *http.Request, id string) (int, any) {
	var in webhookInput
	if r.Method == http.MethodPut || r.Method == http.MethodPatch {
		var err error
		if in, err = readWebhook(r); err != nil {
			return webhookError(http.StatusBadRequest, "InvalidInput", err.Error())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.admin.webhooks[id]
	if !ok {
		return webhookError(http.StatusNotFound, "NotFound", "webhook "+id+" not found")
	}
	switch r.Method {
	case http.MethodGet:
		return http.StatusOK, map[string]any{"webhook": webhookJSON(w)}
	case http.MethodDelete:
		delete(s.admin.webhooks, id)
		return http.StatusNoContent, nil
	}
	w.Subscriptions = slices.Clone(w.Subscriptions)
	if err := in.apply(&w, r.Method == http.MethodPut); err != nil {
		return webhookError(http.StatusBadRequest, "InvalidInput", err.Error())
	}
	if err := checkWebhook(w); err != nil {
		return webhookError(http.StatusBadRequest, "InvalidInput", err.Error())
	}
	w.UpdatedAt = s.now().UTC().Truncate(time.Second)
	s.admin.webhooks[id] = w
	return http.StatusNoContent, nil
}

// signingSecret answers Show Webhook Signing Secret, and Reset (POST, 201) with a new one.
func (s *Server) signingSecret(r *http.Request, id string) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.admin.webhooks[id]
	if !ok {
		return webhookError(http.StatusNotFound, "NotFound", "webhook "+id+" not found")
	}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		w.SigningSecret = newSigningSecret()
		s.admin.webhooks[id] = w
		status = http.StatusCreated
	}
	return status, map[string]any{"signing_secret": map[string]string{"secret": w.SigningSecret, "algorithm": "sha256"}}
}

// listWebhooks answers List Webhooks, cursor-paginated, filtered by filter[name_contains]
// (case-insensitive) and filter[status].
func (s *Server) listWebhooks(r *http.Request) (int, any) {
	q := r.URL.Query()
	name, status := strings.ToLower(q.Get("filter[name_contains]")), q.Get("filter[status]")
	if status != "" && !isOneOf(status, "active", "inactive") {
		return webhookError(http.StatusBadRequest, "InvalidInput", "filter[status] must be active or inactive")
	}
	s.mu.Lock()
	all := s.webhooksLocked()
	s.mu.Unlock()
	items := []any{}
	for _, w := range all {
		if strings.Contains(strings.ToLower(w.Name), name) && (status == "" || w.Status == status) {
			items = append(items, webhookJSON(w))
		}
	}
	// The Webhooks API paginates by cursor only.
	if !q.Has("page[size]") {
		q.Set("page[size]", "100")
		r = r.Clone(r.Context())
		r.URL.RawQuery = q.Encode()
	}
	return listPage(&call{r: r, base: baseURL(r)}, "webhooks", "/api/v2/webhooks", items)
}

func webhookJSON(w Webhook) map[string]any {
	subs := w.Subscriptions
	if subs == nil {
		subs = []string{}
	}
	return map[string]any{
		"id": w.ID, "name": w.Name, "description": w.Description, "status": w.Status,
		"endpoint": w.Endpoint, "http_method": w.HTTPMethod, "request_format": w.RequestFormat,
		"subscriptions": subs,
		"created_at":    stamp(w.CreatedAt), "created_by": fmt.Sprint(APIUserID),
		"updated_at": stamp(w.UpdatedAt), "updated_by": fmt.Sprint(APIUserID),
	}
}

// crockford is the alphabet of ULIDs, the shape of Zendesk's webhook ids.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// webhookIDLocked returns a new 26-character id that sorts after the ones before it. The
// caller holds s.mu.
func (s *Server) webhookIDLocked() string {
	s.lastID++
	var b strings.Builder
	b.WriteString("01")
	for n, i := s.lastID, 0; i < 12; i++ {
		b.WriteByte(crockford[(n>>(5*(11-i)))&31])
	}
	random := make([]byte, 12)
	rand.Read(random)
	for _, x := range random {
		b.WriteByte(crockford[x&31])
	}
	return b.String()
}

func newSigningSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
