package zendesktest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav/internal/apispec"
	"github.com/zenklav/zenklav/zendesk"
)

// Zendesk's limits on ticket writes that the simulator enforces.
const (
	// TicketUpdateLimit updates of one ticket by one user in TicketUpdateWindow, then 429:
	// Zendesk's documented per-ticket limit of Update Ticket. All API requests are the API
	// user's, so the simulator counts per ticket; AgentReply is another user, in the agent's
	// workspace, and is not counted.
	TicketUpdateLimit  = 30
	TicketUpdateWindow = 10 * time.Minute
	// IdempotencyWindow is how long Zendesk remembers an Idempotency-Key.
	IdempotencyWindow = 2 * time.Hour
)

// deskState is what ticket writes keep besides the tickets. Guarded by Server.mu.
type deskState struct {
	comments  map[int64][]Comment         // by ticket, oldest first
	keys      map[string]idempotentCreate // by Idempotency-Key
	updates   map[int64][]time.Time       // by ticket: the API updates in the last window
	followups map[int64][]int64           // by closed ticket: its follow-ups
	public    map[int64]bool              // by ticket: the default of a comment's public
	apiEvents bool                        // API writes send their event webhooks
}

func newDeskState() deskState {
	return deskState{
		comments:  map[int64][]Comment{},
		keys:      map[string]idempotentCreate{},
		updates:   map[int64][]time.Time{},
		followups: map[int64][]int64{},
		public:    map[int64]bool{},
		apiEvents: true,
	}
}

// idempotentCreate is a ticket creation remembered under its Idempotency-Key.
type idempotentCreate struct {
	request string // the request body, canonical JSON
	at      time.Time
	answer  any
}

// SetAPIWebhooks says whether tickets created and comments and statuses changed through the
// API send their event webhooks (ticket.created, ticket.comment_added,
// ticket.status_changed) to the webhook target, as Zendesk does for every change whatever
// made it. On by default; nothing is sent while no target is set (SetWebhookTarget) and no
// webhook made through the Webhooks API subscribes to the event.
func (s *Server) SetAPIWebhooks(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.desk.apiEvents = on
}

// Comments returns the comments of a ticket, oldest first: those written through the API
// and by AgentReply. A ticket stored with AddTicket starts with none.
func (s *Server) Comments(ticketID int64) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.desk.comments[ticketID])
}

// Tickets returns the stored tickets by id; with requesters given, only theirs.
func (s *Server) Tickets(requesters ...int64) []zendesk.Ticket {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []zendesk.Ticket
	for _, t := range s.tickets {
		if len(requesters) == 0 || slices.Contains(requesters, t.RequesterID) {
			out = append(out, cloneTicket(t))
		}
	}
	slices.SortFunc(out, func(a, b zendesk.Ticket) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// ticketInput is what the simulator reads of a ticket in Create and Update Ticket.
type ticketInput struct {
	Subject             string        `json:"subject"`
	Comment             *commentInput `json:"comment"`
	Status              string        `json:"status"`
	Priority            string        `json:"priority"`
	Type                string        `json:"type"`
	Tags                *[]string     `json:"tags"`
	RequesterID         int64         `json:"requester_id"`
	SubmitterID         int64         `json:"submitter_id"`
	AssigneeID          int64         `json:"assignee_id"`
	GroupID             int64         `json:"group_id"`
	BrandID             int64         `json:"brand_id"`
	ViaFollowupSourceID int64         `json:"via_followup_source_id"`
}

type commentInput struct {
	Body     string `json:"body"`
	HTMLBody string `json:"html_body"`
	Public   *bool  `json:"public"`
	AuthorID int64  `json:"author_id"`
}

// readTicket decodes {"ticket": …} and returns it with the body as canonical JSON.
func readTicket(c *call) (ticketInput, string, error) {
	raw, err := io.ReadAll(c.r.Body)
	if err != nil {
		return ticketInput{}, "", err
	}
	var req struct {
		Ticket ticketInput `json:"ticket"`
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		return ticketInput{}, "", err
	}
	var v any
	json.Unmarshal(raw, &v)
	canon, _ := json.Marshal(v) // maps marshal with sorted keys: same content, same bytes
	return req.Ticket, string(canon), nil
}

// createTicket answers Create Ticket. With an Idempotency-Key, a repeat of the same request
// within IdempotencyWindow answers what the first one did, with x-idempotency-lookup: hit;
// the same key with another request is refused with 400.
func (s *Server) createTicket(c *call) (int, any) {
	in, canon, err := readTicket(c)
	if err != nil {
		return http.StatusBadRequest, errorBody("InvalidJSON", err.Error())
	}
	key := c.r.Header.Get(zendesk.HeaderIdempotencyKey)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if key != "" {
		prev, ok := s.desk.keys[key]
		switch {
		case ok && now.Sub(prev.at) < IdempotencyWindow && prev.request == canon:
			c.header.Set(zendesk.HeaderIdempotencyLookup, "hit")
			return http.StatusCreated, prev.answer
		case ok && now.Sub(prev.at) < IdempotencyWindow:
			// Zendesk documents that the key cannot be reused for another request; the exact
			// wording of its error is not public.
			return http.StatusBadRequest, errorBody("IdempotentRequestError", "Idempotency-Key was already used with different request parameters")
		}
		c.header.Set(zendesk.HeaderIdempotencyLookup, "miss")
	}
	if status, refusal := s.checkCreate(&in); refusal != nil {
		return status, refusal
	}
	t := s.newTicketLocked(in, now)
	answer := map[string]any{"ticket": s.ticketJSONLocked(t, c.base)}
	if key != "" {
		s.desk.keys[key] = idempotentCreate{request: canon, at: now, answer: answer}
	}
	c.header.Set("Location", fmt.Sprintf("%s/api/v2/tickets/%d.json", c.base, t.ID))
	if s.desk.apiEvents {
		s.emitLocked("ticket.created", t, map[string]any{})
	}
	return http.StatusCreated, answer
}

// checkCreate refuses what Zendesk refuses in a new ticket, with its 422, and fills in the
// defaults: the requester is the API user unless named. The caller holds s.mu.
func (s *Server) checkCreate(in *ticketInput) (int, any) {
	if in.Comment == nil || strings.TrimSpace(cmp.Or(in.Comment.Body, in.Comment.HTMLBody)) == "" {
		return recordInvalid("description", "BlankValue", "Description: cannot be blank")
	}
	in.RequesterID = cmp.Or(in.RequesterID, APIUserID)
	if _, ok := s.userByID(in.RequesterID); !ok {
		return recordInvalid("requester_id", "InvalidValue", fmt.Sprintf("Requester: %d is not a user", in.RequesterID))
	}
	if _, ok := s.userByID(cmp.Or(in.SubmitterID, APIUserID)); !ok {
		return recordInvalid("submitter_id", "InvalidValue", fmt.Sprintf("Submitter: %d is not a user", in.SubmitterID))
	}
	if _, ok := s.brands[in.BrandID]; in.BrandID != 0 && !ok {
		return recordInvalid("brand_id", "InvalidValue", fmt.Sprintf("Brand: %d is not a brand of the account", in.BrandID))
	}
	if id := in.ViaFollowupSourceID; id != 0 {
		// Only a closed ticket can be followed up; a solved one is reopened instead.
		src, ok := s.tickets[id]
		if !ok || src.Status != "closed" {
			return recordInvalid("via_followup_source_id", "InvalidValue", fmt.Sprintf("Via followup source: ticket %d is not a closed ticket", id))
		}
		if in.Tags == nil {
			tags := slices.Clone(src.Tags) // follow-ups inherit the closed ticket's tags unless given
			in.Tags = &tags
		}
	}
	return 0, nil
}

// newTicketLocked stores the ticket in and its first comment, by the submitter (Zendesk's
// rule), which is the API user unless named. The caller holds s.mu.
func (s *Server) newTicketLocked(in ticketInput, now time.Time) zendesk.Ticket {
	s.lastTicket++
	at := now.UTC().Truncate(time.Second)
	t := zendesk.Ticket{
		ID: s.lastTicket, Subject: in.Subject, Description: cmp.Or(in.Comment.Body, in.Comment.HTMLBody),
		Status: cmp.Or(in.Status, "new"), Priority: in.Priority, Type: in.Type,
		Via:         zendesk.Via{Channel: "api"},
		RequesterID: in.RequesterID, AssigneeID: in.AssigneeID, GroupID: in.GroupID, BrandID: in.BrandID,
		CreatedAt: at, UpdatedAt: at,
	}
	if in.Tags != nil {
		t.Tags = slices.Clone(*in.Tags)
	}
	public := in.Comment.Public == nil || *in.Comment.Public
	s.desk.public[t.ID] = public
	s.addCommentLocked(t.ID, Comment{Body: t.Description, Public: public, AuthorID: cmp.Or(in.SubmitterID, APIUserID)}, now)
	if in.ViaFollowupSourceID != 0 {
		s.desk.followups[in.ViaFollowupSourceID] = append(s.desk.followups[in.ViaFollowupSourceID], t.ID)
	}
	s.tickets[t.ID] = t
	return cloneTicket(t)
}

// addCommentLocked stores a new comment on a ticket and returns it. The caller holds s.mu.
func (s *Server) addCommentLocked(ticketID int64, cm Comment, now time.Time) Comment {
	cm.ID = s.id(0)
	cm.CreatedAt = now.UTC().Truncate(time.Second)
	s.desk.comments[ticketID] = append(s.desk.comments[ticketID], cm)
	return cm
}

// ticketJSONLocked is ticketJSON with what deskState knows: the follow-ups. The caller
// holds s.mu.
func (s *Server) ticketJSONLocked(t zendesk.Ticket, base string) map[string]any {
	m := ticketJSON(t, base)
	if ids := s.desk.followups[t.ID]; len(ids) > 0 {
		m["followup_ids"] = slices.Clone(ids)
	}
	return m
}

// updateTicket answers Update Ticket: a comment (public or internal, by author_id or the API
// user), status, tags, priority, subject, assignee and group. Like Zendesk it refuses more
// than TicketUpdateLimit updates of a ticket in TicketUpdateWindow (429 with Retry-After)
// and any update of a closed ticket (422).
func (s *Server) updateTicket(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["ticket_id"], 10, 64)
	in, _, err := readTicket(c)
	if err != nil {
		return http.StatusBadRequest, errorBody("InvalidJSON", err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[id]
	if !ok {
		return notFound()
	}
	now := s.now()
	if wait := s.updateWait(id, now); wait > 0 {
		c.header.Set("Retry-After", strconv.Itoa(apispec.RetryAfterSeconds(wait)))
		return http.StatusTooManyRequests, map[string]any{"errors": []map[string]string{{"code": "TooManyRequests", "title": "Too many requests to update"}}}
	}
	if t.Status == "closed" {
		return recordInvalid("status", "ClosedPreventsUpdate", "Status: closed prevents ticket update")
	}
	if status, refusal := s.checkComment(id, in.Comment); refusal != nil {
		return status, refusal
	}
	s.desk.updates[id] = append(s.desk.updates[id], now)
	previous := t.Status
	applyUpdate(&t, in)
	t.UpdatedAt = now.UTC().Truncate(time.Second)
	s.tickets[id] = t
	audit := map[string]any{"id": s.id(0), "ticket_id": id, "created_at": stamp(now), "author_id": APIUserID, "metadata": map[string]any{}}
	events := []map[string]any{}
	if in.Comment != nil {
		cm := s.addCommentLocked(id, Comment{
			Body:     cmp.Or(in.Comment.Body, in.Comment.HTMLBody),
			Public:   in.Comment.Public == nil && s.desk.public[id] || in.Comment.Public != nil && *in.Comment.Public,
			AuthorID: cmp.Or(in.Comment.AuthorID, APIUserID),
		}, now)
		events = append(events, map[string]any{"id": cm.ID, "type": "Comment", "body": cm.Body, "public": cm.Public, "author_id": cm.AuthorID})
		if s.desk.apiEvents {
			s.emitCommentLocked(t, cm, nil)
		}
	}
	if t.Status != previous {
		events = append(events, map[string]any{"id": s.id(0), "type": "Change", "field_name": "status", "value": t.Status, "previous_value": previous})
		if s.desk.apiEvents {
			s.emitLocked("ticket.status_changed", t, map[string]any{"current": strings.ToUpper(t.Status), "previous": strings.ToUpper(previous)})
		}
	}
	audit["events"] = events
	return http.StatusOK, map[string]any{"ticket": s.ticketJSONLocked(t, c.base), "audit": audit}
}

// updateWait counts the ticket's updates in the last TicketUpdateWindow and returns how long
// until another is allowed: 0 when it is now. The caller holds s.mu.
func (s *Server) updateWait(id int64, now time.Time) time.Duration {
	recent := slices.DeleteFunc(s.desk.updates[id], func(at time.Time) bool {
		return now.Sub(at) >= TicketUpdateWindow || now.Before(at)
	})
	s.desk.updates[id] = recent
	if len(recent) < TicketUpdateLimit {
		return 0
	}
	return recent[len(recent)-TicketUpdateLimit].Add(TicketUpdateWindow).Sub(now)
}

// checkComment refuses a comment without a body or by an unknown author. The caller holds
// s.mu.
func (s *Server) checkComment(ticketID int64, in *commentInput) (int, any) {
	if in == nil {
		return 0, nil
	}
	if strings.TrimSpace(cmp.Or(in.Body, in.HTMLBody)) == "" {
		return recordInvalid("comment", "BlankValue", "Comment: body cannot be blank")
	}
	if _, ok := s.userByID(cmp.Or(in.AuthorID, APIUserID)); !ok {
		return recordInvalid("comment", "InvalidValue", fmt.Sprintf("Comment: author %d is not a user", in.AuthorID))
	}
	if len(s.desk.comments[ticketID]) >= maxComments {
		return recordInvalid("comment", "TooManyComments", fmt.Sprintf("Comment: a ticket holds at most %d comments", maxComments))
	}
	return 0, nil
}

// maxComments is Zendesk's limit of comments on one ticket.
const maxComments = 5000

// applyUpdate sets the fields of t that in names.
func applyUpdate(t *zendesk.Ticket, in ticketInput) {
	t.Status = cmp.Or(in.Status, t.Status)
	t.Priority = cmp.Or(in.Priority, t.Priority)
	t.Type = cmp.Or(in.Type, t.Type)
	t.Subject = cmp.Or(in.Subject, t.Subject)
	t.AssigneeID = cmp.Or(in.AssigneeID, t.AssigneeID)
	t.GroupID = cmp.Or(in.GroupID, t.GroupID)
	if in.Tags != nil {
		t.Tags = slices.Clone(*in.Tags) // tags in an update replace the ticket's
	}
}

// deleteTicket answers Delete Ticket: from then on the ticket is not found.
func (s *Server) deleteTicket(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["ticket_id"], 10, 64)
	if !s.DeleteTicket(id) {
		return notFound()
	}
	return http.StatusNoContent, nil
}

// DeleteTicket deletes a stored ticket as an agent would; false when there is none.
func (s *Server) DeleteTicket(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.tickets[id]
	delete(s.tickets, id)
	delete(s.desk.comments, id)
	delete(s.desk.updates, id)
	return ok
}

// listComments answers List Comments, oldest first unless sort=-created_at, with cursor
// pagination when asked for (page[size], page[after]) and in one page otherwise.
func (s *Server) listComments(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["ticket_id"], 10, 64)
	s.mu.Lock()
	_, ok := s.tickets[id]
	all := slices.Clone(s.desk.comments[id])
	s.mu.Unlock()
	if !ok {
		return notFound()
	}
	q := c.r.URL.Query()
	if q.Get("sort") == "-created_at" || q.Get("sort_order") == "desc" {
		slices.Reverse(all)
	}
	cursor := q.Has("page[size]") || q.Has("page[after]")
	start, size := 0, len(all)
	if cursor {
		size = 100
		if v := q.Get("page[size]"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 100 {
				return http.StatusBadRequest, errorBody("InvalidPaginationParameter", "page[size] must be a number from 1 to 100")
			}
			size = n
		}
		if v := q.Get("page[after]"); v != "" {
			n, err := decodeCursor(v)
			if err != nil || n > len(all) {
				return http.StatusBadRequest, errorBody("InvalidPaginationParameter", "page[after] is not a cursor of this list")
			}
			start = n
		}
	}
	end := min(start+size, len(all))
	comments := make([]any, 0, end-start)
	for _, cm := range all[start:end] {
		comments = append(comments, commentJSON(cm))
	}
	if !cursor {
		return http.StatusOK, map[string]any{"comments": comments, "count": len(all), "next_page": nil, "previous_page": nil}
	}
	more := end < len(all)
	var next any
	if more {
		v := q
		v.Set("page[after]", encodeCursor(end))
		next = fmt.Sprintf("%s/api/v2/tickets/%d/comments.json?%s", c.base, id, v.Encode())
	}
	return http.StatusOK, map[string]any{
		"comments": comments,
		"meta":     map[string]any{"has_more": more, "after_cursor": encodeCursor(end), "before_cursor": encodeCursor(start)},
		"links":    map[string]any{"next": next, "prev": nil},
	}
}

func commentJSON(cm Comment) map[string]any {
	return map[string]any{
		"id":          cm.ID,
		"type":        "Comment",
		"author_id":   cm.AuthorID,
		"body":        cm.Body,
		"html_body":   `<div class="zd-comment" dir="auto"><p>` + html.EscapeString(cm.Body) + `</p></div>`,
		"plain_body":  cm.Body,
		"public":      cm.Public,
		"attachments": attachmentsJSON(cm),
		"audit_id":    cm.ID,
		"metadata":    map[string]any{},
		"created_at":  stamp(cm.CreatedAt),
	}
}

// attachmentsJSON is a comment's attachments as the API lists them (AttachmentObject).
func attachmentsJSON(cm Comment) []any {
	out := make([]any, 0, len(cm.Attachments))
	for i, name := range cm.Attachments {
		out = append(out, map[string]any{
			"id": cm.ID*100 + int64(i), "file_name": name, "content_type": "application/octet-stream",
			"content_url": "https://example.zendesk.com/attachments/" + name, "size": 1024, "thumbnails": []any{},
		})
	}
	return out
}
