package zendesktest

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav/internal/apispec"
	"github.com/zenklav/zenklav/zendesk"
)

// The agent pages' conversation: a ticket's comments and a reply box, as an agent answers in
// Zendesk's workspace, so a person can play the agent's side of an SMS conversation:
//
//	GET  /agent/tickets.json                 the tickets, as the index lists them
//	GET  /agent/tickets/{id}/comments.json   the ticket's comments, with their authors
//	POST /agent/tickets/{id}/comments        body and public (a form): AgentReply
//
// A reply goes through AgentReply, so it sends the signed ticket.comment_added webhook that
// zenklav's sms role reads.

// maxReplyBytes bounds a reply typed on the page.
const maxReplyBytes = 64 << 10

// conversation is a ticket's comments, and the agent who replies on the page.
type conversation struct {
	Comments []pageComment `json:"comments"`
	Agent    zendesk.User  `json:"-"`
}

// pageComment is one comment as the page shows it.
type pageComment struct {
	ID     int64     `json:"id"`
	Body   string    `json:"body"`
	Public bool      `json:"public"`
	Author string    `json:"author"`
	Role   string    `json:"role"` // the author's: end-user, agent or admin
	Time   time.Time `json:"time"`
}

// indexTickets are the stored tickets by id, as the index lists them.
func (s *Server) indexTickets() []indexTicket {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []indexTicket{}
	for _, t := range s.tickets {
		u := s.users[t.RequesterID]
		out = append(out, indexTicket{ID: t.ID, Subject: t.Subject, Status: t.Status, Requester: cmp.Or(u.Name, u.Email, u.Phone),
			SMS: slices.Contains(t.Tags, "sms") || t.Via.Channel == "sms"})
	}
	slices.SortFunc(out, func(a, b indexTicket) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// conversation reads ticket id's comments, oldest first.
func (s *Server) conversation(id int64, agent zendesk.User) conversation {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := conversation{Comments: []pageComment{}, Agent: agent}
	for _, cm := range s.desk.comments[id] {
		u, ok := s.userByID(cm.AuthorID)
		author := cmp.Or(u.Name, u.Email, u.Phone)
		if !ok {
			author = fmt.Sprintf("user %d", cm.AuthorID)
		}
		c.Comments = append(c.Comments, pageComment{ID: cm.ID, Body: cm.Body, Public: cm.Public, Author: author,
			Role: cmp.Or(u.Role, "end-user"), Time: cm.CreatedAt.UTC()})
	}
	return c
}

// serveConversation answers the conversation's paths (above).
func (s *Server) serveConversation(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/agent/tickets.json" {
		if agentMethod(w, r, http.MethodGet, http.MethodHead) {
			writeNoStore(w, http.StatusOK, s.indexTickets())
		}
		return
	}
	idText, what, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/agent/tickets/"), "/")
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 || (what != "comments" && what != "comments.json") {
		renderAgent(w, http.StatusNotFound, "error.html", errorPage{Title: "Not found", Message: fmt.Sprintf("The simulator has no page %s.", r.URL.Path)})
		return
	}
	if _, ok := s.Ticket(id); !ok {
		renderAgent(w, http.StatusNotFound, "error.html", errorPage{Title: "Ticket not found", Message: fmt.Sprintf("The simulated account has no ticket %d.", id)})
		return
	}
	if what == "comments.json" {
		if agentMethod(w, r, http.MethodGet, http.MethodHead) {
			writeNoStore(w, http.StatusOK, s.conversation(id, zendesk.User{}))
		}
		return
	}
	if agentMethod(w, r, http.MethodPost) {
		s.agentReplyForm(w, r, id)
	}
}

// agentReplyForm answers POST /agent/tickets/{id}/comments: the reply of the agent the form
// names (user, else the page's default agent), public unless public=false. The page's
// script asks for JSON; a plain form is sent back to the ticket page.
func (s *Server) agentReplyForm(w http.ResponseWriter, r *http.Request, id int64) {
	// A page of another site must not reply on the agent's behalf: the simulator listens on
	// loopback, which a browser's other tabs reach too.
	if !apispec.SameOrigin(r) {
		http.Error(w, "replies come from the agent pages only", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxReplyBytes+4<<10)
	body := strings.TrimSpace(r.FormValue("body"))
	public := r.FormValue("public") != "false"
	var viewer int64
	if v := r.FormValue("user"); v != "" {
		viewer, _ = strconv.ParseInt(v, 10, 64)
	}
	s.mu.Lock()
	agent, ok := s.viewer(viewer)
	s.mu.Unlock()
	var err error
	switch {
	case body == "":
		err = errors.New("write a reply first")
	case len(body) > maxReplyBytes:
		err = errors.New("the reply is too long")
	case !ok:
		err = errors.New("no agent of the simulated account can reply (zendesktest: AddUser with role agent)")
	default:
		_, err = s.AgentReply(id, agent.ID, body, public)
	}
	wantsJSON := strings.Contains(r.Header.Get("Accept"), "application/json")
	switch {
	case wantsJSON && err != nil:
		writeNoStore(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
	case wantsJSON:
		writeNoStore(w, http.StatusOK, map[string]any{"status": "added", "public": public})
	case err != nil:
		renderAgent(w, http.StatusUnprocessableEntity, "error.html", errorPage{Title: "Reply not added", Message: err.Error()})
	default:
		http.Redirect(w, r, fmt.Sprintf("/agent/tickets/%d#conversation", id), http.StatusSeeOther)
	}
}

// agentMethod says whether r's method is one of methods, and answers 405 when it is not.
func agentMethod(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "use "+strings.Join(methods, " or "), http.StatusMethodNotAllowed)
	return false
}

// writeNoStore writes JSON that the pages poll: never cached.
func writeNoStore(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, v)
}
