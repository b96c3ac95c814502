package zendesktest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/zenklav/zenklav/zendesk"
)

// APIUserID is the id of the API user: the user the credentials belong to, author of the
// comments written through the API that name no author_id. It is not among the stored users
// (so the agent pages keep choosing their viewer among the account's own agents), but the
// API shows it like one, with the credentials' email and the admin role.
const APIUserID int64 = 1

// APIUser returns the API user as the API shows it.
func (s *Server) APIUser() zendesk.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apiUser()
}

// apiUser is the API user. The caller holds s.mu.
func (s *Server) apiUser() zendesk.User {
	u := fallbackAgent
	u.Email = s.email
	return u
}

// userByID is a stored user or the API user. The caller holds s.mu.
func (s *Server) userByID(id int64) (zendesk.User, bool) {
	if u, ok := s.users[id]; ok {
		return u, true
	}
	if id == APIUserID {
		return s.apiUser(), true
	}
	return zendesk.User{}, false
}

func (s *Server) showCurrentUser(c *call) (int, any) {
	return http.StatusOK, map[string]any{"user": s.userJSON(s.APIUser(), c.base)}
}

// createUser answers Create User: a name is required, the role is end-user unless given,
// and, as on Zendesk, an email that belongs to another user is refused with 422
// DuplicateValue. Phones may be shared.
func (s *Server) createUser(c *call) (int, any) {
	var req struct {
		User struct {
			Name  string `json:"name"`
			Email string `json:"email"`
			Phone string `json:"phone"`
			Role  string `json:"role"`
		} `json:"user"`
	}
	if err := json.NewDecoder(c.r.Body).Decode(&req); err != nil {
		return http.StatusBadRequest, errorBody("InvalidJSON", err.Error())
	}
	in := req.User
	if strings.TrimSpace(in.Name) == "" {
		return recordInvalid("name", "BlankValue", "Name: cannot be blank")
	}
	role := cmp.Or(in.Role, "end-user")
	if !isOneOf(role, "end-user", "agent", "admin") {
		return recordInvalid("role", "InvalidValue", fmt.Sprintf("Role: %s is not a role", role))
	}
	s.mu.Lock()
	if in.Email != "" && s.emailTaken(in.Email) {
		s.mu.Unlock()
		return recordInvalid("email", "DuplicateValue", fmt.Sprintf("Email: %s is already being used by another user", in.Email))
	}
	u := zendesk.User{ID: s.id(0), Name: in.Name, Email: in.Email, Phone: in.Phone, Role: role}
	s.users[u.ID] = u
	s.mu.Unlock()
	c.header.Set("Location", fmt.Sprintf("%s/api/v2/users/%d.json", c.base, u.ID))
	return http.StatusCreated, map[string]any{"user": s.userJSON(u, c.base)}
}

// emailTaken reports whether a user, the API user included, has email. The caller holds
// s.mu.
func (s *Server) emailTaken(email string) bool {
	if strings.EqualFold(s.email, email) {
		return true
	}
	for _, u := range s.users {
		if strings.EqualFold(u.Email, email) {
			return true
		}
	}
	return false
}

// recordInvalid is Zendesk's 422 for a record that fails validation.
func recordInvalid(field, code, description string) (int, any) {
	return http.StatusUnprocessableEntity, map[string]any{
		"error":       "RecordInvalid",
		"description": "Record validation errors",
		"details":     map[string]any{field: []map[string]string{{"error": code, "description": description}}},
	}
}

// search answers List Search Results for users, the one kind of record the simulator
// searches: the query's terms type:user, role:…, phone:… and email:… must all match. A
// phone term matches the digits of a user's phone, as Zendesk documents for callers: digits
// only, and a leading * for numbers that end with them. Any other term is answered 501 so
// that a test learns the simulator does not know it.
func (s *Server) search(c *call) (int, any) {
	terms := strings.Fields(c.r.URL.Query().Get("query"))
	match := func(u zendesk.User) bool { return true }
	for _, term := range terms {
		key, value, ok := strings.Cut(term, ":")
		prev := match
		switch {
		case ok && key == "type" && value == "user":
		case ok && key == "role":
			match = func(u zendesk.User) bool { return prev(u) && u.Role == value }
		case ok && key == "email":
			match = func(u zendesk.User) bool { return prev(u) && strings.EqualFold(u.Email, strings.Trim(value, `"`)) }
		case ok && key == "phone":
			match = func(u zendesk.User) bool { return prev(u) && phoneMatches(u.Phone, value) }
		default:
			return http.StatusNotImplemented, errorBody("NotSimulated", fmt.Sprintf("zendesktest searches users by type:user, role, phone and email only, not %q", term))
		}
	}
	if len(terms) == 0 || !slices.Contains(terms, "type:user") {
		return http.StatusNotImplemented, errorBody("NotSimulated", "zendesktest searches users only: the query must have type:user")
	}
	s.mu.Lock()
	var found []zendesk.User
	for _, u := range s.users {
		if match(u) {
			found = append(found, u)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(found, func(a, b zendesk.User) int { return cmp.Compare(a.ID, b.ID) })
	results := make([]any, 0, len(found))
	for _, u := range found {
		m := s.userJSON(u, c.base)
		m["result_type"] = "user"
		results = append(results, m)
	}
	return http.StatusOK, map[string]any{"results": results, "count": len(results), "facets": nil, "next_page": nil, "previous_page": nil}
}

// phoneMatches reports whether a stored phone matches a search term's digits: all of them,
// or, with a leading *, its last ones.
func phoneMatches(phone, term string) bool {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, phone)
	if suffix, ok := strings.CutPrefix(term, "*"); ok {
		return suffix != "" && strings.HasSuffix(digits, suffix)
	}
	return digits != "" && digits == term
}
