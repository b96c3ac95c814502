package sms

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/kafka"
)

// step handles one customer's messages once: it finishes the write a crash left pending, passes
// over what was handled already, and makes at most two writes to Zendesk, each recorded before
// and after (state.go): the internal notes for the current ticket (campaign SMS, failures, a
// STOP), and the customer's texts (a new ticket, a follow-up, a comment, a reopen).
func (h *Handler) step(ctx context.Context, r Route, ds []*kafka.Delivery[*event]) error {
	first := ds[0].Value
	key := first.key()
	var c conversation
	if err := load(h.cfg.Store, key, &c); err != nil {
		return err
	}
	if c.Pending != nil {
		if err := h.finish(ctx, r, key, &c); err != nil {
			return err
		}
	}
	var fresh []*event
	seen := map[string]bool{}
	for _, d := range ds {
		// A redelivery may come in the same batch as the original, or in a later one.
		if id := d.Value.EventID; c.handled(id) || seen[id] {
			h.count(r, "duplicate")
			continue
		}
		seen[d.Value.EventID] = true
		fresh = append(fresh, d.Value)
	}
	if len(fresh) == 0 {
		return nil
	}
	current, err := h.current(ctx, r, c)
	if err != nil {
		return err
	}
	if current == nil && c.TicketID != 0 {
		// Zendesk no longer has the ticket: its requester may be gone too (deleted, or
		// another account behind the same connection). Look them up again by phone.
		c.TicketID, c.RequesterID = 0, 0
	}
	texts, skipped, notes, err := h.sort(ctx, r, &c, current, fresh)
	if err != nil {
		return err
	}
	if len(notes) > 0 && open(current) {
		p := pending{EventIDs: ids(fresh, "sent", "failed"), Action: "note", TicketID: current.ID,
			Comment: zenklav.DeskComment{Body: strings.Join(notes, "\n\n")}}
		if err := h.write(ctx, r, key, &c, p); err != nil {
			return err
		}
	}
	c.markHandled(skipped...)
	c.markHandled(ids(fresh, "sent", "failed")...)
	if len(texts) == 0 {
		return save(ctx, h.cfg.Store, key, c)
	}
	return h.deliverTexts(ctx, r, key, &c, current, first.CustomerPhone, texts)
}

// sort reads fresh messages: campaign and flow SMS become the conversation's last sent SMS and
// notes for an open ticket, a failed delivery and a STOP become notes, and the inbound texts
// are admitted or passed over (skipped, with the metric of why).
func (h *Handler) sort(ctx context.Context, r Route, c *conversation, current *zenklav.DeskTicket, fresh []*event) (
	texts []text, skipped []string, notes []string, err error,
) {
	var in []text
	for _, e := range fresh {
		switch e.Kind {
		case kindSent:
			c.LastSent = &sentSMS{Body: e.Body, Campaign: e.Campaign, Flow: e.Flow, At: e.At}
			notes = append(notes, sentNote(c.LastSent))
			h.count(r, "sent_noted")
		case kindFailed:
			notes = append(notes, "Klaviyo could not deliver an SMS to the customer: "+quote(e.Body))
		default:
			in = append(in, text{EventID: e.EventID, Body: e.Body, SenderType: e.SenderType, Media: e.Media})
		}
	}
	if len(in) == 0 {
		return nil, nil, notes, nil
	}
	consented, err := h.consented(ctx, r, fresh[0].CustomerPhone)
	if err != nil {
		return nil, nil, nil, err
	}
	keep, why, optOut := admitted(in, r.Connection.SMS.Keywords, consented)
	for id, result := range why {
		skipped = append(skipped, id)
		h.count(r, result)
	}
	if optOut && open(current) {
		notes = append(notes, "The customer texted STOP: Klaviyo will send them no more SMS, and replies on this ticket will not reach them.")
	}
	return keep, skipped, notes, nil
}

// deliverTexts writes the admitted texts where the current ticket says: one comment for all of
// them, so a burst is one update.
func (h *Handler) deliverTexts(ctx context.Context, r Route, key string, c *conversation, current *zenklav.DeskTicket,
	phone string, texts []text,
) error {
	a := route(current)
	body := commentBody(texts)
	p := pending{EventIDs: textIDs(texts), Action: a.String()}
	switch a {
	case addComment, reopen:
		p.TicketID = current.ID
		p.Comment = zenklav.DeskComment{Body: body, Public: true, AuthorID: c.RequesterID}
		if a == reopen {
			p.Status = zenklav.StatusOpen
		}
		if p.Comment.AuthorID == 0 {
			p.Comment.AuthorID = current.RequesterID
		}
	default:
		requester, err := h.requester(ctx, r, c, phone)
		if err != nil {
			return err
		}
		t := &zenklav.NewTicket{RequesterID: requester, BrandID: r.Connection.SMS.Brand, Subject: subject(texts[0].Body, phone),
			Tags: tags(), Comment: zenklav.DeskComment{Body: body, Public: true, AuthorID: requester}}
		if c.LastSent != nil {
			t.Notes = []string{"The last SMS Klaviyo sent this customer, which they may be answering: " + sentNote(c.LastSent)}
		}
		if a == followUp {
			t.FollowUpOf = current.ID
		}
		p.Ticket, p.Key = t, r.Connection.ID+":"+texts[0].EventID
	}
	return h.write(ctx, r, key, c, p)
}

// write records p as pending, makes it, and records it done: a crash in between leaves it to
// finish, which makes it again only if Zendesk does not have it.
func (h *Handler) write(ctx context.Context, r Route, key string, c *conversation, p pending) error {
	p.At = h.cfg.Now()
	c.Pending = &p
	if err := save(ctx, h.cfg.Store, key, *c); err != nil {
		return err
	}
	if err := h.make(ctx, r, c, p); err != nil {
		if p.Ticket == nil && zenklav.ErrorCode(err) == zenklav.ECONFLICT {
			// The ticket was closed since it was read: nothing was written. Forget the
			// write and go again, to a follow-up.
			c.Pending = nil
			if serr := save(ctx, h.cfg.Store, key, *c); serr != nil {
				return serr
			}
			return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "ticket %d was closed meanwhile", p.TicketID)
		}
		return err
	}
	c.Pending = nil
	c.markHandled(p.EventIDs...)
	return save(ctx, h.cfg.Store, key, *c)
}

// finish completes the write a crash left pending.
func (h *Handler) finish(ctx context.Context, r Route, key string, c *conversation) error {
	p := *c.Pending
	if p.Ticket == nil {
		// The clocks of zenklav and Zendesk differ by a little; a minute covers it.
		has, err := r.Desk.HasComment(ctx, p.TicketID, p.Comment, p.At.Add(-time.Minute))
		if err != nil {
			return zendeskErr(err)
		}
		if has {
			c.Pending = nil
			c.markHandled(p.EventIDs...)
			return save(ctx, h.cfg.Store, key, *c)
		}
	}
	// A ticket is created again with the same idempotency key: Zendesk answers with the one
	// it made.
	return h.write(ctx, r, key, c, p)
}

// make sends p to Zendesk.
func (h *Handler) make(ctx context.Context, r Route, c *conversation, p pending) error {
	if p.Ticket != nil {
		t, err := r.Desk.CreateTicket(ctx, *p.Ticket, p.Key)
		if err != nil {
			return zendeskErr(err)
		}
		c.TicketID, c.RequesterID = t.ID, p.Ticket.RequesterID
		h.count(r, map[bool]string{true: "followed_up", false: "ticket_created"}[p.Ticket.FollowUpOf != 0])
		return nil
	}
	if err := r.Desk.Comment(ctx, p.TicketID, p.Comment, p.Status); err != nil {
		return zendeskErr(err)
	}
	h.count(r, map[string]string{"comment": "commented", "reopen": "reopened", "note": "noted"}[p.Action])
	return nil
}

// current is the conversation's ticket as Zendesk has it now; nil when there is none, or
// Zendesk no longer has it.
func (h *Handler) current(ctx context.Context, r Route, c conversation) (*zenklav.DeskTicket, error) {
	if c.TicketID == 0 {
		return nil, nil
	}
	t, err := r.Desk.Ticket(ctx, c.TicketID)
	if zenklav.ErrorCode(err) == zenklav.ENOTFOUND {
		return nil, nil
	}
	if err != nil {
		return nil, zendeskErr(err)
	}
	return &t, nil
}

// requester is the Zendesk end user of the phone: remembered, found, or made from the Klaviyo
// profile (name and email). A crash after making one finds it the next time.
func (h *Handler) requester(ctx context.Context, r Route, c *conversation, phone string) (int64, error) {
	if c.RequesterID != 0 {
		return c.RequesterID, nil
	}
	u, found, err := r.Desk.FindEndUserByPhone(ctx, phone)
	if err != nil {
		return 0, zendeskErr(err)
	}
	if !found {
		p, _, err := h.profile(ctx, r, phone)
		if err != nil {
			return 0, err
		}
		name := strings.TrimSpace(p.FirstName + " " + p.LastName)
		if name == "" {
			name = "SMS " + phone
		}
		if u, err = r.Desk.CreateEndUser(ctx, zenklav.DeskUser{Name: name, Email: p.Email, Phone: phone}); err != nil {
			return 0, zendeskErr(err)
		}
	}
	c.RequesterID = u.ID
	return u.ID, nil
}

func sentNote(s *sentSMS) string {
	from := "Klaviyo"
	switch {
	case s.Campaign != "":
		from = "the campaign " + quote(s.Campaign)
	case s.Flow != "":
		from = "the flow " + quote(s.Flow)
	}
	return fmt.Sprintf("SMS sent by %s on %s: %s", from, s.At.UTC().Format("2006-01-02 15:04 MST"), quote(s.Body))
}

func quote(s string) string { return "“" + strings.TrimSpace(s) + "”" }

// ids are the event ids of the events of kinds.
func ids(events []*event, kinds ...string) []string {
	var out []string
	for _, e := range events {
		for _, k := range kinds {
			if e.Kind == k {
				out = append(out, e.EventID)
			}
		}
	}
	return out
}

func textIDs(texts []text) []string {
	out := make([]string, len(texts))
	for i, t := range texts {
		out[i] = t.EventID
	}
	return out
}

func (h *Handler) count(r Route, result string) {
	h.metrics.WithLabelValues(r.Connection.ID, result).Inc()
}
