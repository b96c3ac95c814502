package zendesk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zenklav/zenklav"
)

// The Client is a zenklav.Desk: the sms role's view of the account's end users and the
// tickets of SMS conversations.
var _ zenklav.Desk = (*Client)(nil)

// HeaderIdempotencyKey is the header that makes a ticket creation safe to retry: Zendesk
// answers a repeat of the same request with the same key, within two hours, with the ticket
// the first one created. HeaderIdempotencyLookup says which it was: "miss" for the first,
// "hit" for a repeat.
const (
	HeaderIdempotencyKey    = "Idempotency-Key"
	HeaderIdempotencyLookup = "X-Idempotency-Lookup"
)

// FindEndUserByPhone finds the end user with that E.164 phone through Zendesk's search, as
// Zendesk documents it for callers (digits only). Search matches loosely, so the result is
// compared with phone exactly; of several end users with that phone the oldest (lowest id)
// wins, so every call picks the same one. Search is indexed a little after a write: a user
// created a moment ago may not be found yet.
func (c *Client) FindEndUserByPhone(ctx context.Context, phone string) (zenklav.DeskUser, bool, error) {
	e164 := zenklav.E164(phone)
	if e164 == "" {
		return zenklav.DeskUser{}, false, zenklav.Errorf(zenklav.EINVALID, "find end user by phone: %q is not an E.164 number", phone)
	}
	users, err := c.searchUsers(ctx, "find end user by phone", "type:user role:end-user phone:"+e164[1:])
	if err != nil {
		return zenklav.DeskUser{}, false, err
	}
	var best User
	for _, u := range users {
		if u.Role == "end-user" && zenklav.E164(u.Phone) == e164 && (best.ID == 0 || u.ID < best.ID) {
			best = u
		}
	}
	if best.ID == 0 {
		return zenklav.DeskUser{}, false, nil
	}
	return deskUser(best), true, nil
}

// findUserByEmail finds the user, of any role, whose email is email.
func (c *Client) findUserByEmail(ctx context.Context, email string) (User, bool, error) {
	users, err := c.searchUsers(ctx, "find user by email", "type:user email:"+email)
	if err != nil {
		return User{}, false, err
	}
	for _, u := range users {
		if strings.EqualFold(u.Email, email) {
			return u, true, nil
		}
	}
	return User{}, false, nil
}

// searchUsers runs a search (GET /api/v2/search) and returns the users among the first
// page of results: the queries here match a handful of users at most.
func (c *Client) searchUsers(ctx context.Context, op, query string) ([]User, error) {
	var body struct {
		Results []struct {
			User
			ResultType string `json:"result_type"`
		} `json:"results"`
	}
	if err := c.get(ctx, op, c.endpoint("/api/v2/search", url.Values{"query": {query}}), &body); err != nil {
		return nil, err
	}
	var users []User
	for _, r := range body.Results {
		if r.ResultType == "" || r.ResultType == "user" {
			users = append(users, r.User)
		}
	}
	return users, nil
}

// CreateEndUser creates an end user with u's name, phone and email (when known), without
// the verification email Zendesk would otherwise send. Create or Update User would match an
// existing user by email, but it would also overwrite that user's name and phone (and an
// agent's role) with what Klaviyo knows; so this creates, and when Zendesk refuses because
// the email is taken, returns the user who has it, unchanged.
func (c *Client) CreateEndUser(ctx context.Context, u zenklav.DeskUser) (zenklav.DeskUser, error) {
	const op = "create end user"
	user := map[string]any{"name": u.Name, "role": "end-user", "skip_verify_email": true}
	if u.Phone != "" {
		phone := zenklav.E164(u.Phone)
		if phone == "" {
			return zenklav.DeskUser{}, zenklav.Errorf(zenklav.EINVALID, "%s: %q is not an E.164 number", op, u.Phone)
		}
		user["phone"] = phone
	}
	if strings.TrimSpace(u.Name) == "" {
		// Zendesk requires a name; the phone is what an agent would call the customer.
		user["name"] = "SMS " + u.Phone
	}
	if u.Email != "" {
		user["email"] = u.Email
	}
	var body struct {
		User User `json:"user"`
	}
	_, err := c.do(ctx, op, http.MethodPost, c.endpoint("/api/v2/users", nil), map[string]any{"user": user}, nil, &body)
	if err == nil {
		return deskUser(body.User), nil
	}
	var apiErr *APIError
	if u.Email == "" || !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnprocessableEntity {
		return zenklav.DeskUser{}, err
	}
	existing, found, ferr := c.findUserByEmail(ctx, u.Email)
	if ferr != nil {
		return zenklav.DeskUser{}, ferr
	}
	if !found {
		return zenklav.DeskUser{}, err
	}
	return deskUser(existing), nil
}

// Ticket reads the ticket's status, requester, brand and tags; ENOTFOUND when it does not
// exist or was deleted.
func (c *Client) Ticket(ctx context.Context, id int64) (zenklav.DeskTicket, error) {
	t, err := c.ShowTicket(ctx, id)
	if err != nil {
		return zenklav.DeskTicket{}, err
	}
	return deskTicket(t), nil
}

// CreateTicket creates the ticket with its first comment by the requester (the submitter is
// the author of the first comment), then adds t.Notes as internal notes: Zendesk takes one
// comment per request. A repeat with the same idempotencyKey (a retry after a crash or a
// timeout) returns the ticket the first call created; its notes are then added only where
// the first call did not get to them.
func (c *Client) CreateTicket(ctx context.Context, t zenklav.NewTicket, idempotencyKey string) (zenklav.DeskTicket, error) {
	const op = "create ticket"
	if idempotencyKey == "" {
		return zenklav.DeskTicket{}, zenklav.Errorf(zenklav.EINVALID, "%s: an idempotency key is required", op)
	}
	ticket := map[string]any{
		"requester_id": t.RequesterID,
		"submitter_id": cmp.Or(t.Comment.AuthorID, t.RequesterID),
		"subject":      t.Subject,
		"comment":      map[string]any{"body": t.Comment.Body, "public": t.Comment.Public},
	}
	if t.BrandID != 0 {
		ticket["brand_id"] = t.BrandID
	}
	if len(t.Tags) > 0 {
		// Sent even for a follow-up, which would otherwise inherit the closed ticket's tags.
		ticket["tags"] = t.Tags
	}
	if t.FollowUpOf != 0 {
		ticket["via_followup_source_id"] = t.FollowUpOf
	}
	var body struct {
		Ticket Ticket `json:"ticket"`
	}
	header := http.Header{HeaderIdempotencyKey: {idempotencyKey}}
	respHeader, err := c.do(ctx, op, http.MethodPost, c.endpoint("/api/v2/tickets", nil), map[string]any{"ticket": ticket}, header, &body)
	if err != nil {
		return zenklav.DeskTicket{}, err
	}
	created := body.Ticket
	if created.ID == 0 {
		return zenklav.DeskTicket{}, zenklav.Errorf(zenklav.EUNAVAILABLE, "%s: answer has no ticket", op)
	}
	repeat := strings.EqualFold(respHeader.Get(HeaderIdempotencyLookup), "hit")
	for _, note := range t.Notes {
		n := zenklav.DeskComment{Body: note}
		if repeat {
			done, err := c.HasComment(ctx, created.ID, n, created.CreatedAt)
			if err != nil {
				return zenklav.DeskTicket{}, err
			}
			if done {
				continue
			}
		}
		if created, err = c.update(ctx, created.ID, n, ""); err != nil {
			return zenklav.DeskTicket{}, err
		}
	}
	return deskTicket(created), nil
}

// Comment adds c to the ticket, and sets its status when status is not "" (a solved ticket
// is reopened this way: whether an API comment reopens it by itself is not documented). A
// closed ticket refuses any update: that error is ECONFLICT and says the ticket is closed, so
// the caller opens a follow-up instead.
func (c *Client) Comment(ctx context.Context, ticketID int64, cm zenklav.DeskComment, status string) error {
	_, err := c.update(ctx, ticketID, cm, status)
	return err
}

// update sends one comment (and status) to the ticket and returns the ticket as it is after.
func (c *Client) update(ctx context.Context, ticketID int64, cm zenklav.DeskComment, status string) (Ticket, error) {
	op := fmt.Sprintf("comment on ticket %d", ticketID)
	comment := map[string]any{"body": cm.Body, "public": cm.Public}
	if cm.AuthorID != 0 {
		comment["author_id"] = cm.AuthorID
	}
	ticket := map[string]any{"comment": comment}
	if status != "" {
		ticket["status"] = status
	}
	var body struct {
		Ticket Ticket `json:"ticket"`
	}
	path := "/api/v2/tickets/" + strconv.FormatInt(ticketID, 10)
	_, err := c.do(ctx, op, http.MethodPut, c.endpoint(path, nil), map[string]any{"ticket": ticket}, nil, &body)
	if err == nil {
		return body.Ticket, nil
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnprocessableEntity && c.closed(ctx, ticketID, apiErr) {
		e := zenklav.Wrap(zenklav.ECONFLICT, apiErr, "%s: ticket %d is closed", op, ticketID)
		e.Response = apiErr.Response()
		return Ticket{}, e
	}
	return Ticket{}, err
}

// closed tells whether a 422 refused an update because the ticket is closed. Zendesk's
// wording for it is not documented, so when the answer does not say so, the ticket is read.
func (c *Client) closed(ctx context.Context, ticketID int64, apiErr *APIError) bool {
	if apiErr.has("status", "closed") {
		return true
	}
	t, err := c.ShowTicket(ctx, ticketID)
	return err == nil && t.Status == "closed"
}

// listedComment is a comment as List Comments gives it.
type listedComment struct {
	ID          int64     `json:"id"`
	AuthorID    int64     `json:"author_id"`
	Body        string    `json:"body"`
	Public      bool      `json:"public"`
	CreatedAt   time.Time `json:"created_at"`
	Attachments []struct {
		FileName string `json:"file_name"`
	} `json:"attachments"`
}

// HasComment says whether the ticket has a comment with cm's body, publicity and author (the
// API user when cm.AuthorID is 0) made at or after since. It reads the comments newest first
// and stops at the first one older than since.
func (c *Client) HasComment(ctx context.Context, ticketID int64, cm zenklav.DeskComment, since time.Time) (bool, error) {
	author := cm.AuthorID
	if author == 0 {
		me, err := c.me(ctx)
		if err != nil {
			return false, err
		}
		author = me
	}
	since = since.Truncate(time.Second) // Zendesk's times have whole seconds
	want := normalizeBody(cm.Body)
	found := false
	err := c.eachComment(ctx, ticketID, func(got listedComment) bool {
		if got.CreatedAt.Before(since) {
			return false
		}
		found = got.AuthorID == author && got.Public == cm.Public && normalizeBody(got.Body) == want
		return !found
	})
	return found, err
}

// CommentAttachments names the files attached to a ticket's comment; none when the comment
// (or the ticket) is gone.
func (c *Client) CommentAttachments(ctx context.Context, ticketID, commentID int64) ([]string, error) {
	var names []string
	err := c.eachComment(ctx, ticketID, func(got listedComment) bool {
		if got.ID != commentID {
			return true
		}
		for _, a := range got.Attachments {
			names = append(names, a.FileName)
		}
		return false
	})
	if zenklav.ErrorCode(err) == zenklav.ENOTFOUND {
		return nil, nil
	}
	return names, err
}

// eachComment hands a ticket's comments, newest first, to f until f says false or they end.
func (c *Client) eachComment(ctx context.Context, ticketID int64, f func(listedComment) bool) error {
	path := "/api/v2/tickets/" + strconv.FormatInt(ticketID, 10) + "/comments"
	next := c.endpoint(path, url.Values{"sort": {"-created_at"}, "page[size]": {strconv.Itoa(maxIDsPerCall)}})
	for page := 1; next != ""; page++ {
		if page > maxPages {
			return zenklav.Errorf(zenklav.EUNAVAILABLE, "list comments of ticket %d: pagination does not end after %d pages", ticketID, maxPages)
		}
		var body commentsPage
		op := fmt.Sprintf("list comments of ticket %d page %d", ticketID, page)
		if err := c.get(ctx, op, next, &body); err != nil {
			return err
		}
		for _, got := range body.Comments {
			if !f(got) {
				return nil
			}
		}
		link := ""
		if body.Meta.HasMore {
			link = body.Links.Next
		}
		var err error
		if next, err = c.follow(path, link); err != nil {
			return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s: next link", op)
		}
	}
	return nil
}

// commentsPage is one page of List Comments in cursor mode.
type commentsPage struct {
	Comments []listedComment `json:"comments"`
	Meta     struct {
		HasMore bool `json:"has_more"`
	} `json:"meta"`
	Links struct {
		Next string `json:"next"`
	} `json:"links"`
}

// normalizeBody is a comment body as compared: Zendesk keeps the text but may change line
// ends and trim the ends.
func normalizeBody(s string) string {
	return strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
}

// me is the id of the API user (GET /api/v2/users/me), the author of comments that name
// none; it never changes for a client's credentials, so it is read once.
func (c *Client) me(ctx context.Context) (int64, error) {
	c.meMu.Lock()
	defer c.meMu.Unlock()
	if c.meID != 0 {
		return c.meID, nil
	}
	var body struct {
		User User `json:"user"`
	}
	if err := c.get(ctx, "get the api user", c.endpoint("/api/v2/users/me", nil), &body); err != nil {
		return 0, err
	}
	if body.User.ID == 0 {
		return 0, zenklav.Errorf(zenklav.EUNAVAILABLE, "get the api user: answer has no user id")
	}
	c.meID = body.User.ID
	return c.meID, nil
}

// meCache holds the API user's id once read.
type meCache struct {
	meMu sync.Mutex
	meID int64
}

func deskUser(u User) zenklav.DeskUser {
	return zenklav.DeskUser{ID: u.ID, Name: u.Name, Email: u.Email, Phone: cmp.Or(zenklav.E164(u.Phone), u.Phone)}
}

func deskTicket(t Ticket) zenklav.DeskTicket {
	return zenklav.DeskTicket{ID: t.ID, Status: t.Status, RequesterID: t.RequesterID, BrandID: t.BrandID, Tags: slices.Clone(t.Tags)}
}
