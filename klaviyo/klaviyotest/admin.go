package klaviyotest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/zenklav/zenklav"
)

// The Webhooks API (reference/klaviyo-sms-and-oauth.md §2.1): an account's system webhooks,
// made, read, changed and removed as stable.json describes, which then receive the events of
// their topics (Text, DeliverWebhooks) signed with their secret_key, with their id as
// Klaviyo-Webhook-Id. So a connection that set its webhook up through the API receives SMS
// webhooks with nothing else to configure. Klaviyo documents no refusals but "Must be https";
// the simulator's are its own assumption:
//
//   - an endpoint_url that is not https: 400 invalid, except http on loopback (127.0.0.1,
//     ::1, localhost), which tests and the sandbox receive on;
//   - a topic get_webhook_topics does not list, or none: 400 invalid;
//   - an empty name or secret_key: 400 invalid;
//   - an update whose data.id is not the path's: 409 conflict;
//   - no webhook of the account has the id: 404 not_found.
//
// Klaviyo answers endpoint_url "truncated for security" (the spec's words, and its example is
// an origin): the simulator answers the URL's scheme and host. A webhook's topics are in the
// answer only when asked for with include=webhook-topics, as JSON:API has it; the secret_key
// never is.

// webhookTopics are what get_webhook_topics lists: the SMS and SMS-consent topics of
// Klaviyo's docs, and the inbound-SMS topic zenklav assumes (zenklav.TopicInboundSMS).
var webhookTopics = []string{
	zenklav.TopicSentSMS,
	"event:klaviyo.received_sms",
	"event:klaviyo.clicked_sms",
	zenklav.TopicFailedToDeliverSMS,
	"event:klaviyo.received_automated_response_sms",
	"event:klaviyo.failed_to_deliver_automated_response_sms",
	"event:klaviyo.subscribed_to_sms_marketing",
	"event:klaviyo.unsubscribed_from_sms_marketing",
	zenklav.TopicInboundSMS,
}

// webhook is one system webhook of an account.
type webhook struct {
	id, name, endpoint, secret string
	description                *string
	enabled                    bool
	topics                     []string
	created, updated           time.Time
}

// Webhook is a system webhook of an account, as Webhooks reports it: all of it, the secret
// and the whole endpoint too, which the API never shows.
type Webhook struct {
	ID          string
	Name        string
	Description string
	EndpointURL string
	SecretKey   string
	Enabled     bool
	Topics      []string // in the order given
	Created     time.Time
	Updated     time.Time
}

func (wh *webhook) export() Webhook {
	out := Webhook{ID: wh.id, Name: wh.name, EndpointURL: wh.endpoint, SecretKey: wh.secret, Enabled: wh.enabled,
		Topics: slices.Clone(wh.topics), Created: wh.created, Updated: wh.updated}
	if wh.description != nil {
		out.Description = *wh.description
	}
	return out
}

// Webhooks returns copies of the system webhooks of the account of privateKey, oldest first;
// nil for an unknown key.
func (s *Server) Webhooks(privateKey string) []Webhook {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[privateKey]
	if a == nil {
		return nil
	}
	out := make([]Webhook, 0, len(a.webhooks))
	for _, wh := range a.webhooks {
		out = append(out, wh.export())
	}
	return out
}

// AddWebhook makes a webhook in the account of privateKey as w gives it, Enabled included,
// without the API's checks (w.ID is ignored), as someone in Klaviyo's app would, and returns
// its id. It panics if no account has privateKey: a mistake in the test.
func (s *Server) AddWebhook(privateKey string, w Webhook) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.mustAccount(privateKey, "AddWebhook")
	now := s.now()
	wh := &webhook{id: newProfileID(), name: w.Name, endpoint: w.EndpointURL, secret: w.SecretKey, enabled: w.Enabled,
		topics: slices.Clone(w.Topics), created: now, updated: now}
	if w.Description != "" {
		wh.description = &w.Description
	}
	a.webhooks = append(a.webhooks, wh)
	return wh.id
}

// RemoveWebhook deletes the webhook of id from the account of privateKey behind the API's
// back, as someone in Klaviyo's app would, and says whether there was one.
func (s *Server) RemoveWebhook(privateKey, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[privateKey]
	if a == nil || a.webhook(id) == nil {
		return false
	}
	a.webhooks = slices.DeleteFunc(a.webhooks, func(wh *webhook) bool { return wh.id == id })
	return true
}

// webhook is the account's webhook of id, or nil. The caller holds s.mu.
func (a *account) webhook(id string) *webhook {
	for _, wh := range a.webhooks {
		if wh.id == id {
			return wh
		}
	}
	return nil
}

// hookTarget is where a delivery goes, and which topics it takes (nil: every one).
type hookTarget struct {
	url, secret, id string
	topics          []string
}

// webhookTargets are the account's enabled webhooks that take topic. The caller holds s.mu.
func (a *account) webhookTargets(topic string) []hookTarget {
	var out []hookTarget
	for _, wh := range a.webhooks {
		if wh.enabled && (topic == "" || slices.Contains(wh.topics, topic)) {
			out = append(out, hookTarget{url: wh.endpoint, secret: wh.secret, id: wh.id, topics: slices.Clone(wh.topics)})
		}
	}
	return out
}

// DeliverWebhooks sends items to the enabled webhooks of the account of privateKey, each
// webhook the items of its topics in one signed request, as Klaviyo batches them. It returns
// how many requests went out, and an error naming each webhook that did not answer 2xx.
func (s *Server) DeliverWebhooks(privateKey string, items ...WebhookItem) (int, error) {
	s.mu.Lock()
	a := s.accounts[privateKey]
	var targets []hookTarget
	if a != nil {
		targets = a.webhookTargets("")
	}
	s.mu.Unlock()
	if a == nil {
		return 0, errors.New("deliver webhooks: no account has this private key")
	}
	return s.deliver(targets, items)
}

// deliver sends each target the items of its topics, if any, and waits for its answer.
func (s *Server) deliver(targets []hookTarget, items []WebhookItem) (int, error) {
	sent := 0
	var errs []error
	for _, t := range targets {
		var batch []WebhookItem
		for _, it := range items {
			if t.topics == nil || slices.Contains(t.topics, it.Topic) {
				batch = append(batch, it)
			}
		}
		if len(batch) == 0 {
			continue
		}
		sent++
		if err := s.deliverOne(t, batch); err != nil {
			errs = append(errs, err)
		}
	}
	return sent, errors.Join(errs...)
}

func (s *Server) deliverOne(t hookTarget, items []WebhookItem) error {
	req, err := s.webhookRequest(t.url, t.secret, t.id, items...)
	if err != nil {
		return err
	}
	resp, err := s.hookClient.Do(req)
	if err != nil {
		return fmt.Errorf("deliver webhook %s: %w", t.id, err)
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook %s: target answered %d: %s", t.id, resp.StatusCode, bytes.TrimSpace(reply))
	}
	return nil
}

// webhookJSON is the part of WebhookCreateQuery and WebhookPartialUpdateQuery the simulator
// reads; the attributes an update leaves out, or sets to null, are nil.
type webhookJSON struct {
	Data struct {
		ID         string `json:"id"`
		Attributes struct {
			Name        *string `json:"name"`
			Description *string `json:"description"`
			EndpointURL *string `json:"endpoint_url"`
			SecretKey   *string `json:"secret_key"`
			Enabled     *bool   `json:"enabled"`
		} `json:"attributes"`
		Relationships *struct {
			Topics *struct {
				Data []struct {
					ID string `json:"id"`
				} `json:"data"`
			} `json:"webhook-topics"`
		} `json:"relationships"`
	} `json:"data"`
}

// topics are the topic ids the body names, nil when it names none.
func (b *webhookJSON) topics() []string {
	r := b.Data.Relationships
	if r == nil || r.Topics == nil {
		return nil
	}
	ids := []string{}
	for _, t := range r.Topics.Data {
		ids = append(ids, t.ID)
	}
	return ids
}

// checkWebhook is the refusal of what a body sets, or nil. A new webhook needs topics; an
// update may leave them as they are.
func checkWebhook(b *webhookJSON, create bool) *apiError {
	attrs := b.Data.Attributes
	topics := b.topics()
	fail := func(detail, pointer string) *apiError {
		e := invalid(detail, pointer)
		return &e
	}
	switch {
	case attrs.Name != nil && *attrs.Name == "":
		return fail("The webhook's name must not be empty.", "/data/attributes/name")
	case attrs.SecretKey != nil && *attrs.SecretKey == "":
		return fail("The webhook's secret_key must not be empty.", "/data/attributes/secret_key")
	case attrs.EndpointURL != nil && !acceptedEndpoint(*attrs.EndpointURL):
		return fail("endpoint_url must be an https URL (the simulator also takes http on loopback).", "/data/attributes/endpoint_url")
	case create && topics == nil || topics != nil && len(topics) == 0:
		return fail("A webhook needs at least one topic.", "/data/relationships/webhook-topics/data")
	}
	for i, t := range topics {
		if !slices.Contains(webhookTopics, t) {
			return fail(fmt.Sprintf("%q is not a webhook topic (GET /api/webhook-topics lists them).", t), fmt.Sprintf("/data/relationships/webhook-topics/data/%d/id", i))
		}
	}
	return nil
}

// acceptedEndpoint says whether a webhook may post to raw: https, or http on loopback.
func acceptedEndpoint(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	return u.Scheme == "http" && (host == "localhost" || ip != nil && ip.IsLoopback())
}

// truncated is what Klaviyo shows of an endpoint: its scheme and host.
func truncated(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// resource is wh as the API answers it; its topics only with withTopics.
func (wh *webhook) resource(base string, withTopics bool) map[string]any {
	self := base + "/api/webhooks/" + wh.id + "/"
	rel := map[string]any{"links": map[string]any{"self": self + "relationships/webhook-topics/", "related": self + "webhook-topics/"}}
	if withTopics {
		refs := []any{}
		for _, t := range wh.topics {
			refs = append(refs, map[string]any{"type": "webhook-topic", "id": t})
		}
		rel["data"] = refs
	}
	return map[string]any{
		"type": "webhook",
		"id":   wh.id,
		"attributes": map[string]any{
			"name": wh.name, "description": wh.description, "endpoint_url": truncated(wh.endpoint), "enabled": wh.enabled,
			"created_at": wh.created.UTC().Format(time.RFC3339), "updated_at": wh.updated.UTC().Format(time.RFC3339),
		},
		"relationships": map[string]any{"webhook-topics": rel},
		"links":         map[string]any{"self": self},
	}
}

// topicResource is a webhook topic as the API answers it.
func topicResource(base, id string) map[string]any {
	return map[string]any{"type": "webhook-topic", "id": id, "links": map[string]any{"self": base + "/api/webhook-topics/" + url.PathEscape(id) + "/"}}
}

// includesTopics says whether the request asked for the webhooks' topics.
func includesTopics(c *call) bool {
	return slices.Contains(listParam(c.query, "include"), "webhook-topics")
}

// included are the topic resources of whs, each once.
func included(base string, whs ...*webhook) []any {
	var ids []string
	for _, wh := range whs {
		ids = append(ids, wh.topics...)
	}
	slices.Sort(ids)
	out := []any{}
	for _, id := range slices.Compact(ids) {
		out = append(out, topicResource(base, id))
	}
	return out
}

func webhookNotFound(id string) answer {
	return answer{status: http.StatusNotFound, errors: []apiError{{Code: "not_found", Title: "Not found.", Detail: fmt.Sprintf("A webhook with id %s does not exist.", id)}}}
}

// getWebhooks answers GET /api/webhooks: every webhook of the account, in one page.
func (s *Server) getWebhooks(c *call) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	data := []any{}
	for _, wh := range c.account.webhooks {
		data = append(data, wh.resource(c.base, includesTopics(c)))
	}
	body := map[string]any{"data": data, "links": map[string]any{"self": c.base + "/api/webhooks/"}}
	if includesTopics(c) {
		body["included"] = included(c.base, c.account.webhooks...)
	}
	return answer{status: http.StatusOK, body: body}
}

// getWebhook answers GET /api/webhooks/{id}.
func (s *Server) getWebhook(c *call) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	wh := c.account.webhook(c.params["id"])
	if wh == nil {
		return webhookNotFound(c.params["id"])
	}
	body := map[string]any{"data": wh.resource(c.base, includesTopics(c)), "links": map[string]any{"self": c.base + "/api/webhooks/" + wh.id + "/"}}
	if includesTopics(c) {
		body["included"] = included(c.base, wh)
	}
	return answer{status: http.StatusOK, body: body}
}

// createWebhook answers POST /api/webhooks: 201 with the new webhook, enabled.
func (s *Server) createWebhook(c *call) answer {
	var b webhookJSON
	if err := json.Unmarshal(c.body, &b); err != nil {
		return answer{status: http.StatusBadRequest, errors: []apiError{invalid("decode body: "+err.Error(), "/data")}}
	}
	if e := checkWebhook(&b, true); e != nil {
		return answer{status: http.StatusBadRequest, errors: []apiError{*e}}
	}
	attrs := b.Data.Attributes
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	wh := &webhook{id: newProfileID(), name: *attrs.Name, description: attrs.Description, endpoint: *attrs.EndpointURL,
		secret: *attrs.SecretKey, enabled: true, topics: b.topics(), created: now, updated: now}
	c.account.webhooks = append(c.account.webhooks, wh)
	return answer{status: http.StatusCreated, body: map[string]any{"data": wh.resource(c.base, true), "links": map[string]any{"self": c.base + "/api/webhooks/"}}}
}

// updateWebhook answers PATCH /api/webhooks/{id}: the attributes and topics the body gives
// replace the webhook's.
func (s *Server) updateWebhook(c *call) answer {
	var b webhookJSON
	if err := json.Unmarshal(c.body, &b); err != nil {
		return answer{status: http.StatusBadRequest, errors: []apiError{invalid("decode body: "+err.Error(), "/data")}}
	}
	id := c.params["id"]
	if b.Data.ID != id {
		return answer{status: http.StatusConflict, errors: []apiError{{Code: "conflict", Title: "Conflict.", Detail: fmt.Sprintf("data.id %q is not the id in the path, %q.", b.Data.ID, id)}}}
	}
	if e := checkWebhook(&b, false); e != nil {
		return answer{status: http.StatusBadRequest, errors: []apiError{*e}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	wh := c.account.webhook(id)
	if wh == nil {
		return webhookNotFound(id)
	}
	a := b.Data.Attributes
	set(&wh.name, a.Name)
	set(&wh.endpoint, a.EndpointURL)
	set(&wh.secret, a.SecretKey)
	set(&wh.enabled, a.Enabled)
	if a.Description != nil {
		wh.description = a.Description
	}
	if ts := b.topics(); ts != nil {
		wh.topics = ts
	}
	wh.updated = s.now()
	return answer{status: http.StatusOK, body: map[string]any{"data": wh.resource(c.base, true), "links": map[string]any{"self": c.base + "/api/webhooks/" + id + "/"}}}
}

// set sets *dst to *v when v is not nil.
func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// deleteWebhook answers DELETE /api/webhooks/{id}: 204, and no more deliveries.
func (s *Server) deleteWebhook(c *call) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := c.params["id"]
	if c.account.webhook(id) == nil {
		return webhookNotFound(id)
	}
	c.account.webhooks = slices.DeleteFunc(c.account.webhooks, func(wh *webhook) bool { return wh.id == id })
	return answer{status: http.StatusNoContent}
}

// getWebhookTopics answers GET /api/webhook-topics.
func (s *Server) getWebhookTopics(c *call) answer {
	data := []any{}
	for _, t := range webhookTopics {
		data = append(data, topicResource(c.base, t))
	}
	return answer{status: http.StatusOK, body: map[string]any{"data": data, "links": map[string]any{"self": c.base + "/api/webhook-topics/"}}}
}

// getWebhookTopic answers GET /api/webhook-topics/{id}.
func (s *Server) getWebhookTopic(c *call) answer {
	id := c.params["id"]
	if !slices.Contains(webhookTopics, id) {
		return answer{status: http.StatusNotFound, errors: []apiError{{Code: "not_found", Title: "Not found.", Detail: fmt.Sprintf("A webhook topic with id %s does not exist.", id)}}}
	}
	return answer{status: http.StatusOK, body: map[string]any{"data": topicResource(c.base, id), "links": map[string]any{"self": c.base + "/api/webhook-topics/" + url.PathEscape(id) + "/"}}}
}
