package zendesktest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
)

// The admin side of the simulated account: the automations and views an integration
// makes (this file), and the webhooks (webhooks_api.go). Tests read what exists with
// Automations, Views and Webhooks, and every write the API took with Writes.

// Automation is an automation of the simulated account.
type Automation struct {
	ID        int64
	Title     string
	Active    bool
	All, Any  []zenklav.Condition
	Actions   []zenklav.Action
	CreatedAt time.Time
	UpdatedAt time.Time
}

// View is a view of the simulated account.
type View struct {
	ID        int64
	Title     string
	Active    bool
	All, Any  []zenklav.Condition
	Columns   []string // column ids: "status", "subject", … or a custom field's id
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Write is one write (POST, PUT, PATCH or DELETE) the API answered with success.
type Write struct {
	Method string
	Path   string
	Status int
}

// adminState holds the admin objects. Guarded by Server.mu.
type adminState struct {
	automations map[int64]Automation
	views       map[int64]View
	webhooks    map[string]Webhook
	writes      []Write
}

func newAdminState() adminState {
	return adminState{automations: map[int64]Automation{}, views: map[int64]View{}, webhooks: map[string]Webhook{}}
}

// Automations returns the account's automations by id.
func (s *Server) Automations() []Automation {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Automation, 0, len(s.admin.automations))
	for _, a := range s.admin.automations {
		out = append(out, cloneAutomation(a))
	}
	slices.SortFunc(out, func(a, b Automation) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Views returns the account's views by id.
func (s *Server) Views() []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]View, 0, len(s.admin.views))
	for _, v := range s.admin.views {
		out = append(out, cloneView(v))
	}
	slices.SortFunc(out, func(a, b View) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Writes returns the writes the API took so far, oldest first: tests compare two runs of
// an idempotent setup by them. The token endpoint's grants are not writes to the account.
func (s *Server) Writes() []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.admin.writes)
}

// noteWrite records r as a write when it changed something.
func (s *Server) noteWrite(r *http.Request, status int) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead || status < 200 || status > 299 || strings.HasPrefix(r.URL.Path, "/oauth/") {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.admin.writes = append(s.admin.writes, Write{Method: r.Method, Path: r.URL.Path, Status: status})
}

func cloneAutomation(a Automation) Automation {
	a.All, a.Any, a.Actions = slices.Clone(a.All), slices.Clone(a.Any), slices.Clone(a.Actions)
	return a
}

func cloneView(v View) View {
	v.All, v.Any, v.Columns = slices.Clone(v.All), slices.Clone(v.Any), slices.Clone(v.Columns)
	return v
}

// ruleInput is what the simulator reads of an automation or a view in a create or update:
// automations take their conditions under conditions, views at the top level.
type ruleInput struct {
	Title      *string `json:"title"`
	Active     *bool   `json:"active"`
	Conditions *struct {
		All []conditionInput `json:"all"`
		Any []conditionInput `json:"any"`
	} `json:"conditions"`
	All     *[]conditionInput `json:"all"`
	Any     *[]conditionInput `json:"any"`
	Actions *[]conditionInput `json:"actions"`
	Output  *struct {
		Columns []json.RawMessage `json:"columns"`
	} `json:"output"`
}

type conditionInput struct {
	Field    string          `json:"field"`
	Operator string          `json:"operator"`
	Value    json.RawMessage `json:"value"`
}

// readRule decodes {kind: …} from the request.
func readRule(c *call, kind string) (ruleInput, error) {
	raw, err := io.ReadAll(io.LimitReader(c.r.Body, 1<<20))
	if err != nil {
		return ruleInput{}, err
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil {
		return ruleInput{}, err
	}
	inner, ok := body[kind]
	if !ok {
		return ruleInput{}, fmt.Errorf("the body must be {%q: {…}}", kind)
	}
	var in ruleInput
	return in, json.Unmarshal(inner, &in)
}

// ruleValue reads a condition's or action's value as the spec has it, a string; Zendesk
// takes numbers for some fields and null for operators such as "changed". Arrays (a
// notification action's) are not simulated.
func ruleValue(raw json.RawMessage) (string, error) {
	var s string
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("value %s: zendesktest simulates string and number values only", raw)
}

func conditions(in []conditionInput) ([]zenklav.Condition, error) {
	out := make([]zenklav.Condition, 0, len(in))
	for _, x := range in {
		v, err := ruleValue(x.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, zenklav.Condition{Field: x.Field, Operator: x.Operator, Value: v})
	}
	return out, nil
}

func actions(in []conditionInput) ([]zenklav.Action, error) {
	out := make([]zenklav.Action, 0, len(in))
	for _, x := range in {
		v, err := ruleValue(x.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, zenklav.Action{Field: x.Field, Value: v})
	}
	return out, nil
}

// timeFields are the time-based condition fields of automations ("hours since …").
var timeFields = []string{"NEW", "OPEN", "PENDING", "HOLD", "SOLVED", "CLOSED", "assigned_at", "updated_at",
	"requester_updated_at", "assignee_updated_at", "due_date", "until_due_date"}

// ticketFields are the fields of which automations and views need a condition in all.
var ticketFields = []string{"status", "type", "group_id", "assignee_id", "requester_id"}

func hasField(cs []zenklav.Condition, fields []string) bool {
	return slices.ContainsFunc(cs, func(c zenklav.Condition) bool { return slices.Contains(fields, c.Field) })
}

// checkAutomation refuses an automation Zendesk refuses (422), by the rules Create
// Automation states: a title and actions; in all, a time-based condition and one on a
// ticket field; a condition true only once (a time condition with "is") or an action that
// nullifies a condition; and no active automation identical to it. The caller holds s.mu.
func (s *Server) checkAutomation(a Automation) (int, any) {
	nullifies := slices.ContainsFunc(a.Actions, func(x zenklav.Action) bool {
		return slices.ContainsFunc(a.All, func(c zenklav.Condition) bool { return c.Field == x.Field && c.Operator == "is" && c.Value != x.Value })
	})
	once := slices.ContainsFunc(a.All, func(c zenklav.Condition) bool { return slices.Contains(timeFields, c.Field) && c.Operator == "is" })
	switch {
	case strings.TrimSpace(a.Title) == "":
		return recordInvalid("title", "BlankValue", "Title: cannot be blank")
	case len(a.Actions) == 0:
		return recordInvalid("actions", "BlankValue", "Actions: cannot be blank")
	case !hasField(a.All, timeFields):
		return recordInvalid("base", "InvalidValue", "Automation must have at least one time-based condition in all")
	case !hasField(a.All, ticketFields):
		return recordInvalid("base", "InvalidValue", "Automation must have a condition in all that checks status, type, group_id, assignee_id or requester_id")
	case !once && !nullifies:
		return recordInvalid("base", "InvalidValue", "Automation must have a condition that is true only once or an action that nullifies a condition")
	}
	for _, o := range s.admin.automations {
		if o.ID != a.ID && o.Active && a.Active && sameConditions(o.All, a.All) && slices.Equal(o.Actions, a.Actions) {
			return recordInvalid("base", "InvalidValue", fmt.Sprintf("Automation is identical to automation %d", o.ID))
		}
	}
	return 0, nil
}

func sameConditions(a, b []zenklav.Condition) bool {
	key := func(c zenklav.Condition) string { return c.Field + "\x00" + c.Operator + "\x00" + c.Value }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i] = key(a[i])
	}
	for i := range b {
		kb[i] = key(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

// applyAutomation changes a by in. Zendesk replaces conditions and actions together: an
// update that gives either clears what it does not give.
func applyAutomation(a *Automation, in ruleInput) error {
	if in.Title != nil {
		a.Title = *in.Title
	}
	if in.Active != nil {
		a.Active = *in.Active
	}
	if in.Conditions == nil && in.Actions == nil {
		return nil
	}
	var err error
	a.All, a.Any, a.Actions = nil, nil, nil
	if in.Conditions != nil {
		if a.All, err = conditions(in.Conditions.All); err != nil {
			return err
		}
		if a.Any, err = conditions(in.Conditions.Any); err != nil {
			return err
		}
	}
	if in.Actions != nil {
		a.Actions, err = actions(*in.Actions)
	}
	return err
}

// createAutomation answers Create Automation.
func (s *Server) createAutomation(c *call) (int, any) {
	in, err := readRule(c, "automation")
	if err != nil {
		return http.StatusBadRequest, errorBody("InvalidJSON", err.Error())
	}
	a := Automation{Active: true}
	if err := applyAutomation(&a, in); err != nil {
		return http.StatusNotImplemented, errorBody("NotSimulated", err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if status, refusal := s.checkAutomation(a); refusal != nil {
		return status, refusal
	}
	a.ID = s.id(0)
	a.CreatedAt = s.now().UTC().Truncate(time.Second)
	a.UpdatedAt = a.CreatedAt
	s.admin.automations[a.ID] = a
	return http.StatusCreated, map[string]any{"automation": automationJSON(a, c.base)}
}

// updateAutomation answers Update Automation.
func (s *Server) updateAutomation(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["automation_id"], 10, 64)
	in, err := readRule(c, "automation")
	if err != nil {
		return http.StatusBadRequest, errorBody("InvalidJSON", err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.admin.automations[id]
	if !ok {
		return notFound()
	}
	a = cloneAutomation(a)
	if err := applyAutomation(&a, in); err != nil {
		return http.StatusNotImplemented, errorBody("NotSimulated", err.Error())
	}
	if status, refusal := s.checkAutomation(a); refusal != nil {
		return status, refusal
	}
	a.UpdatedAt = s.now().UTC().Truncate(time.Second)
	s.admin.automations[id] = a
	return http.StatusOK, map[string]any{"automation": automationJSON(a, c.base)}
}

func (s *Server) showAutomation(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["automation_id"], 10, 64)
	s.mu.Lock()
	a, ok := s.admin.automations[id]
	s.mu.Unlock()
	if !ok {
		return notFound()
	}
	return http.StatusOK, map[string]any{"automation": automationJSON(a, c.base)}
}

func (s *Server) deleteAutomation(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["automation_id"], 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.admin.automations[id]; !ok {
		return notFound()
	}
	delete(s.admin.automations, id)
	return http.StatusNoContent, nil
}

// listAutomations answers List Automations, by position (here: by id).
func (s *Server) listAutomations(c *call) (int, any) {
	all := s.Automations()
	items := make([]any, len(all))
	for i, a := range all {
		items[i] = automationJSON(a, c.base)
	}
	return listPage(c, "automations", "/api/v2/automations", items)
}

func automationJSON(a Automation, base string) map[string]any {
	return map[string]any{
		"id": a.ID, "url": fmt.Sprintf("%s/api/v2/automations/%d.json", base, a.ID),
		"title": a.Title, "raw_title": a.Title, "active": a.Active, "default": false, "position": 1,
		"conditions": map[string]any{"all": conditionsJSON(a.All), "any": conditionsJSON(a.Any)},
		"actions":    actionsJSON(a.Actions),
		"created_at": stamp(a.CreatedAt), "updated_at": stamp(a.UpdatedAt),
	}
}

func conditionsJSON(cs []zenklav.Condition) []map[string]string {
	out := make([]map[string]string, len(cs))
	for i, c := range cs {
		out[i] = map[string]string{"field": c.Field, "operator": c.Operator, "value": c.Value}
	}
	return out
}

func actionsJSON(as []zenklav.Action) []map[string]string {
	out := make([]map[string]string, len(as))
	for i, a := range as {
		out[i] = map[string]string{"field": a.Field, "value": a.Value}
	}
	return out
}

// listPage answers a list request with items in list order, the way Zendesk paginates:
// cursor pagination when the request asks for it (page[size], page[after], page[before])
// with meta and links, offset pagination (page, per_page) with count and next_page otherwise.
func listPage(c *call, kind, path string, items []any) (int, any) {
	q := c.r.URL.Query()
	cursor := q.Has("page[size]") || q.Has("page[after]") || q.Has("page[before]")
	sizeParam := "per_page"
	if cursor {
		sizeParam = "page[size]"
	}
	size := 100
	if v := q.Get(sizeParam); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return http.StatusBadRequest, errorBody("InvalidPaginationParameter", sizeParam+" must be a number from 1 to 100")
		}
		size = n
	}
	start := 0
	switch {
	case cursor && q.Get("page[after]") != "":
		n, err := decodeCursor(q.Get("page[after]"))
		if err != nil || n > len(items) {
			return http.StatusBadRequest, errorBody("InvalidPaginationParameter", "page[after] is not a cursor of this list")
		}
		start = n
	case !cursor && q.Get("page") != "":
		n, err := strconv.Atoi(q.Get("page"))
		if err != nil || n < 1 {
			return http.StatusBadRequest, errorBody("InvalidPaginationParameter", "page must be a positive number")
		}
		start = min((n-1)*size, len(items))
	}
	end := min(start+size, len(items))
	link := func(v url.Values) string { return c.base + path + ".json?" + v.Encode() }
	if cursor {
		var next, prev, after, before any
		if end > start {
			after, before = encodeCursor(end), encodeCursor(start)
			next = link(url.Values{"page[size]": {strconv.Itoa(size)}, "page[after]": {encodeCursor(end)}})
			prev = link(url.Values{"page[size]": {strconv.Itoa(size)}, "page[before]": {encodeCursor(start)}})
		}
		return http.StatusOK, map[string]any{
			kind:    items[start:end],
			"meta":  map[string]any{"has_more": end < len(items), "after_cursor": after, "before_cursor": before},
			"links": map[string]any{"next": next, "prev": prev},
		}
	}
	page := start/size + 1
	var next, prev any
	if end < len(items) {
		next = link(url.Values{"page": {strconv.Itoa(page + 1)}, "per_page": {strconv.Itoa(size)}})
	}
	if page > 1 {
		prev = link(url.Values{"page": {strconv.Itoa(page - 1)}, "per_page": {strconv.Itoa(size)}})
	}
	return http.StatusOK, map[string]any{kind: items[start:end], "count": len(items), "next_page": next, "previous_page": prev}
}
