package zendesk

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/zenklav/zenklav"
)

// The Client is a zenklav.ZendeskAdmin: what setting up a connection reads, makes and
// removes in the account.
var _ zenklav.ZendeskAdmin = (*Client)(nil)

// Brands returns every brand of the account, following Zendesk's pagination links.
func (c *Client) Brands(ctx context.Context) ([]zenklav.Brand, error) {
	return listAll[zenklav.Brand](ctx, c, "brands", "/api/v2/brands", nil)
}

// listAll reads every page of the list at path, whose answer holds its records under
// kind. Cursor pagination is the one Zendesk recommends; offset links are still followed in
// case an account or proxy answers with them.
func listAll[T any](ctx context.Context, c *Client, kind, path string, q url.Values) ([]T, error) {
	q = cloneValues(q)
	q.Set("page[size]", strconv.Itoa(maxIDsPerCall))
	next := c.endpoint(path, q)
	seen := map[string]bool{}
	var all []T
	for page := 1; next != ""; page++ {
		if page > maxPages || seen[next] {
			return nil, zenklav.Errorf(zenklav.EUNAVAILABLE, "list %s: pagination does not end after %d pages", kind, page-1)
		}
		seen[next] = true
		var body struct {
			Meta *struct {
				HasMore bool `json:"has_more"`
			} `json:"meta"`
			Links struct {
				Next string `json:"next"`
			} `json:"links"`
			NextPage string `json:"next_page"`
		}
		var raw map[string]json.RawMessage
		op := fmt.Sprintf("list %s page %d", kind, page)
		if err := c.get(ctx, op, next, &raw); err != nil {
			return nil, err
		}
		var records []T
		if err := decodeFields(raw, map[string]any{kind: &records, "meta": &body.Meta, "links": &body.Links, "next_page": &body.NextPage}); err != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s: decode answer", op)
		}
		all = append(all, records...)
		link := body.NextPage
		if body.Meta != nil {
			// In cursor mode links.next is set even on the last page; has_more decides.
			link = ""
			if body.Meta.HasMore {
				link = body.Links.Next
			}
		}
		var err error
		if next, err = c.follow(path, link); err != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s: next link", op)
		}
	}
	return all, nil
}

// decodeFields decodes each field of raw that is present and not null into its target.
func decodeFields(raw map[string]json.RawMessage, targets map[string]any) error {
	for name, target := range targets {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			continue
		}
		if err := json.Unmarshal(v, target); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = slices.Clone(v)
	}
	return out
}

// kindAPI is what ensure needs to know of one kind of Zendesk object whose record it reads
// as T.
type kindAPI[T any] struct {
	kind, plural, path string // "view", "views", "/api/v2/views"
	id                 func(T) string
	title              func(T) string // the name or title that finds it when its id does not
	query              url.Values     // narrows the list to candidates, where the API can
	update             string         // the method that updates one
}

// ensure makes the object of id (or, when that is gone, the one titled title) equal what
// same accepts, writing body only where it is not: created with a POST when no object is
// found, updated when one differs. It returns the object's id and whether it wrote.
func ensure[T any](ctx context.Context, c *Client, k kindAPI[T], id, title string, same func(T) bool, body any) (string, bool, error) {
	op := "ensure " + k.kind + " " + strconv.Quote(title)
	have, found, err := find(ctx, c, k, id, title)
	if err != nil {
		return "", false, err
	}
	if found && same(have) {
		return k.id(have), false, nil
	}
	if found {
		path := k.path + "/" + url.PathEscape(k.id(have))
		if _, err := c.do(ctx, op+": update", k.update, c.endpoint(path, nil), body, nil, nil); err != nil {
			return "", false, err
		}
		return k.id(have), true, nil
	}
	var answer map[string]json.RawMessage
	if _, err := c.do(ctx, op+": create", http.MethodPost, c.endpoint(k.path, nil), body, nil, &answer); err != nil {
		return "", false, err
	}
	var made T
	if err := decodeFields(answer, map[string]any{k.kind: &made}); err != nil || k.id(made) == "" || k.id(made) == "0" {
		// The object exists now, but without its id the next setup cannot find it but by
		// its title; that is still worth telling.
		return "", true, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s: create answer has no %s id", op, k.kind)
	}
	return k.id(made), true, nil
}

// find returns the object of id when it still exists, else the first one titled title.
func find[T any](ctx context.Context, c *Client, k kindAPI[T], id, title string) (T, bool, error) {
	var zero T
	if id != "" && id != "0" {
		var answer map[string]json.RawMessage
		op := "get " + k.kind + " " + id
		err := c.get(ctx, op, c.endpoint(k.path+"/"+url.PathEscape(id), nil), &answer)
		switch {
		case err == nil:
			var have T
			if err := decodeFields(answer, map[string]any{k.kind: &have}); err != nil || k.id(have) == "" || k.id(have) == "0" {
				return zero, false, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s: answer has no %s", op, k.kind)
			}
			return have, true, nil
		case zenklav.ErrorCode(err) != zenklav.ENOTFOUND:
			return zero, false, err
		}
		// Deleted out of band: one of the same title, or a new one, takes its place.
	}
	all, err := listAll[T](ctx, c, k.plural, k.path, k.query)
	if err != nil {
		return zero, false, err
	}
	for _, o := range all {
		if k.title(o) == title {
			return o, true, nil
		}
	}
	return zero, false, nil
}

// remove deletes the object at path; one already gone is not an error.
func (c *Client) remove(ctx context.Context, op, path string) error {
	_, err := c.do(ctx, op, http.MethodDelete, c.endpoint(path, nil), nil, nil, nil)
	if zenklav.ErrorCode(err) == zenklav.ENOTFOUND {
		return nil
	}
	return err
}

// webhook is a webhook as the Webhooks API reads and writes it.
type webhook struct {
	ID            string   `json:"id,omitempty"`
	Name          string   `json:"name"`
	Endpoint      string   `json:"endpoint"`
	HTTPMethod    string   `json:"http_method"`
	RequestFormat string   `json:"request_format"`
	Status        string   `json:"status"`
	Subscriptions []string `json:"subscriptions"`
}

var webhooks = kindAPI[webhook]{
	kind: "webhook", plural: "webhooks", path: "/api/v2/webhooks",
	id:    func(w webhook) string { return w.ID },
	title: func(w webhook) string { return w.Name },
	// PUT replaces the whole webhook, so nothing of an older version lingers.
	update: http.MethodPut,
}

// EnsureWebhook makes the event-subscribed webhook w exist, active: Zendesk requires POST
// and JSON of a webhook that subscribes to events.
func (c *Client) EnsureWebhook(ctx context.Context, id string, w zenklav.ZendeskWebhook) (string, bool, error) {
	if strings.TrimSpace(w.Name) == "" || w.Endpoint == "" || len(w.Subscriptions) == 0 {
		return "", false, zenklav.Errorf(zenklav.EINVALID, "ensure webhook: a name, an endpoint and subscriptions are required")
	}
	want := webhook{
		Name: w.Name, Endpoint: w.Endpoint, HTTPMethod: http.MethodPost, RequestFormat: "json",
		Status: "active", Subscriptions: slices.Clone(w.Subscriptions),
	}
	same := func(have webhook) bool {
		return have.Name == want.Name && have.Endpoint == want.Endpoint && strings.EqualFold(have.HTTPMethod, want.HTTPMethod) &&
			have.RequestFormat == want.RequestFormat && have.Status == want.Status && sameSet(have.Subscriptions, want.Subscriptions)
	}
	k := webhooks
	k.query = url.Values{"filter[name_contains]": {w.Name}}
	return ensure(ctx, c, k, id, w.Name, same, map[string]any{"webhook": want})
}

// WebhookSigningSecret reads the secret Zendesk signs the webhook's deliveries with.
func (c *Client) WebhookSigningSecret(ctx context.Context, id string) (zenklav.Secret, error) {
	op := "get signing secret of webhook " + id
	if id == "" {
		return "", zenklav.Errorf(zenklav.EINVALID, "%s: no webhook id", op)
	}
	var body struct {
		SigningSecret struct {
			Secret string `json:"secret"`
		} `json:"signing_secret"`
	}
	if err := c.get(ctx, op, c.endpoint("/api/v2/webhooks/"+url.PathEscape(id)+"/signing_secret", nil), &body); err != nil {
		return "", err
	}
	if body.SigningSecret.Secret == "" {
		return "", zenklav.Errorf(zenklav.EUNAVAILABLE, "%s: answer has no secret", op)
	}
	return zenklav.Secret(body.SigningSecret.Secret), nil
}

// DeleteWebhook deletes the webhook; one already gone is not an error.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	return c.remove(ctx, "delete webhook "+id, "/api/v2/webhooks/"+url.PathEscape(id))
}

// rule is an automation or a view as Zendesk reads them back: the conditions under
// conditions, a view's columns under execution.
type rule struct {
	ID         int64  `json:"id"`
	Title      string `json:"title"`
	Active     bool   `json:"active"`
	Conditions struct {
		All []ruleCondition `json:"all"`
		Any []ruleCondition `json:"any"`
	} `json:"conditions"`
	Actions   []ruleCondition `json:"actions"`
	Execution struct {
		Columns []struct {
			ID flexString `json:"id"`
		} `json:"columns"`
	} `json:"execution"`
}

// ruleCondition is a condition, or an action (which has no operator).
type ruleCondition struct {
	Field    string     `json:"field"`
	Operator string     `json:"operator"`
	Value    flexString `json:"value"`
}

// flexString reads a value Zendesk may send as a string, a number or null (a custom field
// column's id, an hours condition) as text, so it compares with what zenklav asked for.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*f = flexString(s)
		return nil
	}
	if string(b) == "null" {
		*f = ""
		return nil
	}
	*f = flexString(b) // a number, or JSON Zendesk may send for other actions
	return nil
}

func ruleID(r rule) string    { return strconv.FormatInt(r.ID, 10) }
func ruleTitle(r rule) string { return r.Title }
func parseRuleID(s string) int64 {
	id, _ := strconv.ParseInt(s, 10, 64)
	return id
}

var (
	automations = kindAPI[rule]{kind: "automation", plural: "automations", path: "/api/v2/automations", id: ruleID, title: ruleTitle, update: http.MethodPut}
	views       = kindAPI[rule]{kind: "view", plural: "views", path: "/api/v2/views", id: ruleID, title: ruleTitle, update: http.MethodPut}
)

// EnsureAutomation makes the automation a exist, active, with its conditions all required
// and no "any" conditions.
func (c *Client) EnsureAutomation(ctx context.Context, id int64, a zenklav.ZendeskAutomation) (int64, bool, error) {
	if strings.TrimSpace(a.Title) == "" || len(a.Conditions) == 0 || len(a.Actions) == 0 {
		return 0, false, zenklav.Errorf(zenklav.EINVALID, "ensure automation: a title, conditions and actions are required")
	}
	actions := make([]ruleCondition, len(a.Actions))
	for i, x := range a.Actions {
		actions[i] = ruleCondition{Field: x.Field, Value: flexString(x.Value)}
	}
	same := func(have rule) bool {
		return have.Title == a.Title && have.Active && len(have.Conditions.Any) == 0 &&
			sameConditions(have.Conditions.All, a.Conditions) && sameSet(actionKeys(have.Actions), actionKeys(actions))
	}
	body := map[string]any{"automation": map[string]any{
		"title": a.Title, "active": true,
		"conditions": map[string]any{"all": conditionsJSON(a.Conditions), "any": []any{}},
		"actions":    actionsJSON(a.Actions),
	}}
	made, changed, err := ensure(ctx, c, automations, idString(id), a.Title, same, body)
	return parseRuleID(made), changed, err
}

// DeleteAutomation deletes the automation; one already gone is not an error.
func (c *Client) DeleteAutomation(ctx context.Context, id int64) error {
	if id == 0 {
		return nil
	}
	return c.remove(ctx, fmt.Sprintf("delete automation %d", id), "/api/v2/automations/"+strconv.FormatInt(id, 10))
}

// EnsureView makes the view v exist, active, shared with every agent (no restriction),
// showing its columns in order.
func (c *Client) EnsureView(ctx context.Context, id int64, v zenklav.ZendeskView) (int64, bool, error) {
	if strings.TrimSpace(v.Title) == "" || len(v.Conditions) == 0 {
		return 0, false, zenklav.Errorf(zenklav.EINVALID, "ensure view: a title and conditions are required")
	}
	same := func(have rule) bool {
		columns := make([]string, len(have.Execution.Columns))
		for i, col := range have.Execution.Columns {
			columns[i] = string(col.ID)
		}
		return have.Title == v.Title && have.Active && len(have.Conditions.Any) == 0 &&
			sameConditions(have.Conditions.All, v.Conditions) && slices.Equal(columns, v.Columns)
	}
	// Create and Update View take the conditions at the top level, and the columns as
	// output; they read them back under conditions and execution.
	body := map[string]any{"view": map[string]any{
		"title": v.Title, "active": true,
		"all": conditionsJSON(v.Conditions), "any": []any{},
		"output": map[string]any{"columns": append([]string{}, v.Columns...)},
	}}
	made, changed, err := ensure(ctx, c, views, idString(id), v.Title, same, body)
	return parseRuleID(made), changed, err
}

// DeleteView deletes the view; one already gone is not an error.
func (c *Client) DeleteView(ctx context.Context, id int64) error {
	if id == 0 {
		return nil
	}
	return c.remove(ctx, fmt.Sprintf("delete view %d", id), "/api/v2/views/"+strconv.FormatInt(id, 10))
}

func idString(id int64) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatInt(id, 10)
}

func conditionsJSON(cs []zenklav.Condition) []map[string]string {
	out := make([]map[string]string, len(cs))
	for i, x := range cs {
		out[i] = map[string]string{"field": x.Field, "operator": x.Operator, "value": x.Value}
	}
	return out
}

func actionsJSON(as []zenklav.Action) []map[string]string {
	out := make([]map[string]string, len(as))
	for i, x := range as {
		out[i] = map[string]string{"field": x.Field, "value": x.Value}
	}
	return out
}

// sameConditions compares conditions as a set: "all" holds whatever their order.
func sameConditions(have []ruleCondition, want []zenklav.Condition) bool {
	w := make([]ruleCondition, len(want))
	for i, x := range want {
		w[i] = ruleCondition{Field: x.Field, Operator: x.Operator, Value: flexString(x.Value)}
	}
	return sameSet(actionKeys(have), actionKeys(w))
}

// actionKeys writes conditions or actions as comparable strings.
func actionKeys(cs []ruleCondition) []string {
	out := make([]string, len(cs))
	for i, x := range cs {
		out[i] = strconv.Quote(x.Field) + " " + strconv.Quote(x.Operator) + " " + strconv.Quote(string(x.Value))
	}
	return out
}

// sameSet says whether a and b hold the same strings, as many times each, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
