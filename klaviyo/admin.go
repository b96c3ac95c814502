package klaviyo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/zenklav/zenklav"
)

// What setting up a connection makes in its Klaviyo account: the system webhook that posts
// the SMS topics to zenklav, through the Webhooks API (reference/klaviyo-sms-and-oauth.md
// §2.1). Klaviyo never shows a webhook's secret_key again, and answers its endpoint_url
// "truncated for security", so EnsureWebhook cannot read back all it wrote: it trusts the
// secret of a webhook zenklav made, and recognises its endpoint by a fingerprint it keeps in
// the description.

// The Client is a zenklav.KlaviyoAdmin: the setup's view of the account.
var _ zenklav.KlaviyoAdmin = (*Client)(nil)

// WebhookLimit is the limit of each operation of the Webhooks API (get_webhooks,
// create_webhook, …): a few calls per setup, paced to about one every five seconds per
// operation.
var WebhookLimit = Limit{PerSecond: 1, PerMinute: 15}

// The buckets of the Webhooks API's operations, which Klaviyo limits one by one.
const (
	bucketGetWebhooks   = "GET /api/webhooks"
	bucketGetWebhook    = "GET /api/webhooks/{id}"
	bucketCreateWebhook = "/api/webhooks"
	bucketUpdateWebhook = "PATCH /api/webhooks/{id}"
	bucketDeleteWebhook = "DELETE /api/webhooks/{id}"
)

func init() {
	// The Webhooks API's limits join the table of limits.go here, next to the calls that
	// count against them, before any client is made.
	for _, k := range []string{bucketGetWebhooks, bucketGetWebhook, bucketCreateWebhook, bucketUpdateWebhook, bucketDeleteWebhook} {
		limitsByPath[k] = WebhookLimit
	}
}

// webhookID is the shape of a webhook id that is safe in a path ("01HF7AYTK76RHR4F17G6DGTRGF"
// in the spec).
var webhookID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// EnsureWebhook makes the account's system webhook w exist, as zenklav.KlaviyoAdmin says:
// the webhook of id when it still exists, else the first of the same name, else a new one.
// It returns the webhook's id and whether anything was written. A webhook found by id is
// zenklav's, with the secret zenklav gave it, and is updated only where it differs (name,
// description, endpoint, topics, enabled); one found by name only is updated with w's
// secret too, since Klaviyo never tells what secret it has.
func (c *Client) EnsureWebhook(ctx context.Context, id string, w zenklav.KlaviyoWebhook) (string, bool, error) {
	const op = "ensure klaviyo webhook"
	if err := validateWebhook(w); err != nil {
		return "", false, zenklav.Wrap(zenklav.EINVALID, err, "%s", op)
	}
	if id != "" {
		r, found, err := c.webhook(ctx, id)
		if err != nil {
			return "", false, err
		}
		if found && r.matches(w) {
			return r.ID, false, nil
		}
		if found {
			if err := c.updateWebhook(ctx, r.ID, w, false); err != nil {
				return "", false, err
			}
			return r.ID, true, nil
		}
	}
	all, err := c.webhooks(ctx)
	if err != nil {
		return "", false, err
	}
	for _, r := range all {
		if r.Attributes.Name == w.Name {
			if err := c.updateWebhook(ctx, r.ID, w, true); err != nil {
				return "", false, err
			}
			return r.ID, true, nil
		}
	}
	id, err = c.createWebhook(ctx, w)
	if err != nil {
		return "", false, err
	}
	return id, true, nil
}

// DeleteWebhook removes the webhook with the given id (DELETE /api/webhooks/{id}). One
// already gone, or no id at all, is not an error.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	const op = "delete klaviyo webhook"
	if id == "" {
		return nil
	}
	if !webhookID.MatchString(id) {
		return zenklav.Errorf(zenklav.EINVALID, "%s: %q is not a Klaviyo webhook id", op, id)
	}
	_, err := c.do(ctx, op, http.MethodDelete, bucketDeleteWebhook, "/api/webhooks/"+id, nil, nil, maxBody)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusNotFound {
		return nil
	}
	return err
}

// validateWebhook reports what keeps w from being a webhook zenklav can rely on. Klaviyo
// itself requires https; the simulator takes http on loopback, so that is left to them.
func validateWebhook(w zenklav.KlaviyoWebhook) error {
	if strings.TrimSpace(w.Name) == "" {
		return errors.New("the webhook has no name")
	}
	u, err := url.Parse(w.EndpointURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("the webhook's endpoint is not an http(s) URL with a host")
	}
	if w.SecretKey == "" {
		return errors.New("the webhook has no secret key")
	}
	if len(w.Topics) == 0 || slices.Contains(w.Topics, "") {
		return errors.New("the webhook has no topics, or an empty one")
	}
	return nil
}

// describe is the description zenklav gives its webhook: who made it, and a fingerprint of
// the endpoint, which Klaviyo shows only truncated.
func describe(w zenklav.KlaviyoWebhook) string {
	sum := sha256.Sum256([]byte(w.EndpointURL))
	return "Made by zenklav: SMS events for Zendesk. Endpoint #" + hex.EncodeToString(sum[:6])
}

// webhookResource is a webhook as Klaviyo answers it (WebhookResponseObjectResource), with
// its topics when asked to include them.
type webhookResource struct {
	ID         string `json:"id"`
	Attributes struct {
		Name        string  `json:"name"`
		Description *string `json:"description"`
		EndpointURL string  `json:"endpoint_url"`
		Enabled     bool    `json:"enabled"`
	} `json:"attributes"`
	Relationships struct {
		Topics struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
		} `json:"webhook-topics"`
	} `json:"relationships"`
}

// matches says whether r already is w, as far as Klaviyo shows it.
func (r webhookResource) matches(w zenklav.KlaviyoWebhook) bool {
	a := r.Attributes
	if a.Name != w.Name || !a.Enabled || a.Description == nil || *a.Description != describe(w) {
		return false
	}
	// The description's fingerprint is w's endpoint: what Klaviyo shows of the URL only has
	// to be w's, or a truncation of it.
	if a.EndpointURL == "" || !strings.HasPrefix(w.EndpointURL, strings.TrimSuffix(a.EndpointURL, "/")) {
		return false
	}
	var got []string
	for _, t := range r.Relationships.Topics.Data {
		got = append(got, t.ID)
	}
	return slices.Equal(topicSet(got), topicSet(w.Topics))
}

// topicSet is topics sorted, without repeats.
func topicSet(topics []string) []string {
	s := slices.Clone(topics)
	slices.Sort(s)
	return slices.Compact(s)
}

// webhook reads the webhook with the given id and its topics (GET /api/webhooks/{id});
// found is false when the account has none.
func (c *Client) webhook(ctx context.Context, id string) (webhookResource, bool, error) {
	const op = "get klaviyo webhook"
	if !webhookID.MatchString(id) {
		return webhookResource{}, false, zenklav.Errorf(zenklav.EINVALID, "%s: %q is not a Klaviyo webhook id", op, id)
	}
	var doc struct {
		Data webhookResource `json:"data"`
	}
	q := url.Values{"include": {"webhook-topics"}}
	err := c.get(ctx, op, bucketGetWebhook, "/api/webhooks/"+id, q, &doc)
	if zenklav.ErrorCode(err) == zenklav.ENOTFOUND {
		return webhookResource{}, false, nil
	}
	if err != nil {
		return webhookResource{}, false, err
	}
	return doc.Data, true, nil
}

// webhooks reads the account's webhooks with their topics (GET /api/webhooks). The
// operation takes no page parameter: one answer has them all.
func (c *Client) webhooks(ctx context.Context) ([]webhookResource, error) {
	var doc struct {
		Data []webhookResource `json:"data"`
	}
	q := url.Values{"include": {"webhook-topics"}}
	if err := c.get(ctx, "list klaviyo webhooks", bucketGetWebhooks, "/api/webhooks", q, &doc); err != nil {
		return nil, err
	}
	return doc.Data, nil
}

// createWebhook makes w (POST /api/webhooks) and returns its id. Klaviyo enables a new
// webhook.
func (c *Client) createWebhook(ctx context.Context, w zenklav.KlaviyoWebhook) (string, error) {
	const op = "create klaviyo webhook"
	payload, err := json.Marshal(webhookBody("", w, true))
	if err != nil {
		return "", zenklav.Wrap(zenklav.EINTERNAL, err, "%s: encode body", op)
	}
	answer, err := c.do(ctx, op, http.MethodPost, bucketCreateWebhook, "/api/webhooks", nil, payload, maxBody)
	if err != nil {
		return "", err
	}
	var doc struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(answer, &doc); err != nil || doc.Data.ID == "" {
		return "", zenklav.Errorf(zenklav.EINTERNAL, "%s: Klaviyo's answer has no webhook id", op)
	}
	return doc.Data.ID, nil
}

// updateWebhook makes the webhook of id w (PATCH /api/webhooks/{id}), enabled, and with w's
// secret when withSecret.
func (c *Client) updateWebhook(ctx context.Context, id string, w zenklav.KlaviyoWebhook, withSecret bool) error {
	const op = "update klaviyo webhook"
	payload, err := json.Marshal(webhookBody(id, w, withSecret))
	if err != nil {
		return zenklav.Wrap(zenklav.EINTERNAL, err, "%s: encode body", op)
	}
	_, err = c.do(ctx, op, http.MethodPatch, bucketUpdateWebhook, "/api/webhooks/"+id, nil, payload, maxBody)
	return err
}

// webhookBody is WebhookCreateQuery (no id) or WebhookPartialUpdateQuery for w. Only an
// update may name enabled.
func webhookBody(id string, w zenklav.KlaviyoWebhook, withSecret bool) map[string]any {
	attrs := map[string]any{"name": w.Name, "description": describe(w), "endpoint_url": w.EndpointURL}
	if withSecret {
		attrs["secret_key"] = w.SecretKey.Reveal()
	}
	topics := []map[string]string{}
	for _, t := range topicSet(w.Topics) {
		topics = append(topics, map[string]string{"type": "webhook-topic", "id": t})
	}
	data := map[string]any{
		"type":          "webhook",
		"attributes":    attrs,
		"relationships": map[string]any{"webhook-topics": map[string]any{"data": topics}},
	}
	if id != "" {
		data["id"] = id
		attrs["enabled"] = true
	}
	return map[string]any{"data": data}
}
