package zendesktest

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav/zendesk"
)

// AddTicket stores t and returns it as stored. A zero ID gets the next ticket number; zero
// times get the server clock; an empty status is "new" and an empty via channel "web".
// Custom field values must be strings (or the answer that returns them violates the spec,
// whose custom field value is a string), and RequesterID must be set, as the spec requires.
func (s *Server) AddTicket(t zendesk.Ticket) zendesk.Ticket {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.ID == 0 {
		s.lastTicket++
		t.ID = s.lastTicket
	}
	s.lastTicket = max(s.lastTicket, t.ID)
	now := s.now().UTC().Truncate(time.Second)
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now
	}
	if t.UpdatedAt.IsZero() {
		t.UpdatedAt = t.CreatedAt
	}
	t.Status = cmp.Or(t.Status, "new")
	t.Via.Channel = cmp.Or(t.Via.Channel, "web")
	t.Tags = slices.Clone(t.Tags)
	t.CustomFields = slices.Clone(t.CustomFields)
	s.tickets[t.ID] = t
	return cloneTicket(t)
}

// Ticket returns the stored ticket with the given id.
func (s *Server) Ticket(id int64) (zendesk.Ticket, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[id]
	return cloneTicket(t), ok
}

// UpdateTicket changes a stored ticket with update and moves its updated_at to the server
// clock, as any change in Zendesk does. It returns the ticket as stored.
func (s *Server) UpdateTicket(id int64, update func(*zendesk.Ticket)) (zendesk.Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[id]
	if !ok {
		return zendesk.Ticket{}, fmt.Errorf("update ticket %d: no such ticket", id)
	}
	t = cloneTicket(t)
	update(&t)
	t.ID = id
	t.UpdatedAt = s.now().UTC().Truncate(time.Second)
	s.tickets[id] = cloneTicket(t)
	return t, nil
}

// AddUser stores u and returns it as stored; a zero ID gets a new id and an empty role is
// "end-user".
func (s *Server) AddUser(u zendesk.User) zendesk.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	u.ID = s.id(u.ID)
	u.Role = cmp.Or(u.Role, "end-user")
	s.users[u.ID] = u
	return u
}

// User returns the stored user with the given id, or the API user (APIUserID).
func (s *Server) User(id int64) (zendesk.User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.userByID(id)
}

// AddGroup stores g and returns it as stored; a zero ID gets a new id.
func (s *Server) AddGroup(g zendesk.Group) zendesk.Group {
	s.mu.Lock()
	defer s.mu.Unlock()
	g.ID = s.id(g.ID)
	s.groups[g.ID] = g
	return g
}

// AddBrand stores b and returns it as stored; a zero ID gets a new id.
func (s *Server) AddBrand(b zendesk.Brand) zendesk.Brand {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.ID = s.id(b.ID)
	s.brands[b.ID] = b
	return b
}

// id returns id, or a new one when it is zero. The caller holds s.mu.
func (s *Server) id(id int64) int64 {
	if id == 0 {
		s.lastID++
		return s.lastID
	}
	s.lastID = max(s.lastID, id)
	return id
}

func cloneTicket(t zendesk.Ticket) zendesk.Ticket {
	t.Tags = slices.Clone(t.Tags)
	t.CustomFields = slices.Clone(t.CustomFields)
	return t
}

func (s *Server) showTicket(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["ticket_id"], 10, 64)
	t, ok := s.Ticket(id)
	if !ok {
		return notFound()
	}
	return http.StatusOK, map[string]any{"ticket": ticketJSON(t, c.base)}
}

func (s *Server) showUser(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["user_id"], 10, 64)
	u, ok := s.User(id)
	if !ok {
		return notFound()
	}
	return http.StatusOK, map[string]any{"user": s.userJSON(u, c.base)}
}

func (s *Server) showManyUsers(c *call) (int, any) {
	if c.r.URL.Query().Has("external_ids") {
		return http.StatusNotImplemented, errorBody("NotSimulated", "zendesktest does not simulate external_ids")
	}
	return showMany(c, "users", func(id int64) (any, bool) {
		u, ok := s.User(id)
		return s.userJSON(u, c.base), ok
	})
}

func (s *Server) showManyTickets(c *call) (int, any) {
	return showMany(c, "tickets", func(id int64) (any, bool) {
		t, ok := s.Ticket(id)
		return ticketJSON(t, c.base), ok
	})
}

// showMany answers a show_many request: up to 100 ids, and, like Zendesk, ids that match
// nothing are left out of the answer.
func showMany(c *call, kind string, find func(int64) (any, bool)) (int, any) {
	q := c.r.URL.Query()
	ids := strings.Split(q.Get("ids"), ",")
	if q.Get("ids") == "" || len(ids) > 100 {
		return http.StatusBadRequest, errorBody("InvalidValue", "ids must list between 1 and 100 ids")
	}
	found := []any{}
	for _, v := range ids {
		id, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return http.StatusBadRequest, errorBody("InvalidValue", fmt.Sprintf("ids: %q is not an id", v))
		}
		if x, ok := find(id); ok {
			found = append(found, x)
		}
	}
	return http.StatusOK, map[string]any{kind: found}
}

func (s *Server) showGroup(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["group_id"], 10, 64)
	s.mu.Lock()
	g, ok := s.groups[id]
	s.mu.Unlock()
	if !ok {
		return notFound()
	}
	return http.StatusOK, map[string]any{"group": s.groupJSON(g, c.base)}
}

// listBrands answers with cursor pagination when the request asks for it (page[size] or
// page[after]) and with offset pagination otherwise, as Zendesk does. Brands are sorted by
// name, as the spec says.
func (s *Server) listBrands(c *call) (int, any) {
	s.mu.Lock()
	all := make([]zendesk.Brand, 0, len(s.brands))
	for _, b := range s.brands {
		all = append(all, b)
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b zendesk.Brand) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	defaultID := int64(0)
	if len(all) > 0 {
		defaultID = slices.MinFunc(all, func(a, b zendesk.Brand) int { return cmp.Compare(a.ID, b.ID) }).ID
	}

	items := make([]any, len(all))
	for i, b := range all {
		items[i] = s.brandJSON(b, b.ID == defaultID, c.base)
	}
	return listPage(c, "brands", "/api/v2/brands", items)
}

// Cursors are opaque to clients; here they encode the offset of the next item.
func encodeCursor(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o" + strconv.Itoa(offset)))
}

func decodeCursor(c string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2 || b[0] != 'o' {
		return 0, fmt.Errorf("bad cursor %q", c)
	}
	return strconv.Atoi(string(b[1:]))
}

func notFound() (int, any) {
	return http.StatusNotFound, errorBody("RecordNotFound", "Not found")
}

// The *JSON functions write records as Zendesk's REST API does. They do not reuse the
// zendesk package's struct tags on purpose: the client's decoding is then checked against
// an independent encoding, and the encoding against the spec.

func ticketJSON(t zendesk.Ticket, base string) map[string]any {
	tags := t.Tags
	if tags == nil {
		tags = []string{}
	}
	fields := make([]map[string]any, 0, len(t.CustomFields))
	for _, f := range t.CustomFields {
		fields = append(fields, map[string]any{"id": f.ID, "value": f.Value})
	}
	m := map[string]any{
		"id":                     t.ID,
		"url":                    cmp.Or(t.URL, fmt.Sprintf("%s/api/v2/tickets/%d.json", base, t.ID)),
		"subject":                t.Subject,
		"raw_subject":            t.Subject,
		"description":            t.Description,
		"status":                 t.Status,
		"tags":                   tags,
		"via":                    map[string]any{"channel": t.Via.Channel, "source": map[string]any{"from": map[string]any{}, "to": map[string]any{}, "rel": nil}},
		"requester_id":           t.RequesterID,
		"submitter_id":           t.RequesterID,
		"custom_fields":          fields,
		"collaborator_ids":       []int64{},
		"follower_ids":           []int64{},
		"email_cc_ids":           []int64{},
		"sharing_agreement_ids":  []int64{},
		"followup_ids":           []int64{},
		"is_public":              true,
		"has_incidents":          false,
		"allow_channelback":      false,
		"allow_attachments":      true,
		"from_messaging_channel": false,
		"due_at":                 nil,
		"created_at":             stamp(t.CreatedAt),
		"updated_at":             stamp(t.UpdatedAt),
		"generated_timestamp":    t.UpdatedAt.Unix(),
	}
	// Zendesk sends null for these when unset, but the spec does not allow null for them,
	// so the simulator leaves them out; clients must accept both.
	for k, v := range map[string]int64{"assignee_id": t.AssigneeID, "group_id": t.GroupID, "brand_id": t.BrandID} {
		if v != 0 {
			m[k] = v
		}
	}
	for k, v := range map[string]string{"priority": t.Priority, "type": t.Type} {
		if v != "" {
			m[k] = v
		}
	}
	if t.RequesterID == 0 {
		delete(m, "requester_id")
		delete(m, "submitter_id")
	}
	return m
}

func (s *Server) userJSON(u zendesk.User, base string) map[string]any {
	var phone any
	if u.Phone != "" {
		phone = u.Phone
	}
	return map[string]any{
		"id":                      u.ID,
		"url":                     fmt.Sprintf("%s/api/v2/users/%d.json", base, u.ID),
		"name":                    u.Name,
		"email":                   u.Email,
		"phone":                   phone,
		"role":                    u.Role,
		"active":                  true,
		"verified":                true,
		"suspended":               false,
		"shared":                  false,
		"shared_agent":            false,
		"locale":                  "en-US",
		"locale_id":               1,
		"time_zone":               "Eastern Time (US & Canada)",
		"iana_time_zone":          "America/New_York",
		"tags":                    []string{},
		"user_fields":             map[string]any{},
		"created_at":              stamp(s.created),
		"updated_at":              stamp(s.created),
		"two_factor_auth_enabled": false,
	}
}

func (s *Server) groupJSON(g zendesk.Group, base string) map[string]any {
	return map[string]any{
		"id":          g.ID,
		"url":         fmt.Sprintf("%s/api/v2/groups/%d.json", base, g.ID),
		"name":        g.Name,
		"description": "",
		"default":     false,
		"deleted":     false,
		"is_public":   true,
		"created_at":  stamp(s.created),
		"updated_at":  stamp(s.created),
	}
}

func (s *Server) brandJSON(b zendesk.Brand, isDefault bool, base string) map[string]any {
	return map[string]any{
		"id":                b.ID,
		"url":               fmt.Sprintf("%s/api/v2/brands/%d.json", base, b.ID),
		"name":              b.Name,
		"subdomain":         b.Subdomain,
		"brand_url":         b.BrandURL,
		"active":            b.Active,
		"default":           isDefault,
		"is_deleted":        false,
		"has_help_center":   false,
		"help_center_state": "disabled",
		"ticket_form_ids":   []int64{},
		"created_at":        stamp(s.created),
		"updated_at":        stamp(s.created),
	}
}

// stamp formats t as Zendesk's REST API does: UTC, seconds.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
