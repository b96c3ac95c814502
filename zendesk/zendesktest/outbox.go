package zendesktest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/zenklav/zenklav/zendesk"
)

// outbox holds the event webhooks that changes made, to be sent one at a time in the order of
// the changes, as a receiver would see Zendesk's. Guarded by Server.mu.
type outbox struct {
	queue   []outgoing
	running bool // a goroutine is sending the queue
}

// outgoing is one event webhook to send to its hooks; done, when not nil, gets the
// delivery's result.
type outgoing struct {
	event string
	body  []byte
	hooks []hook
	done  chan error
}

// hook is one receiver of event webhooks, and the secret its deliveries are signed with.
type hook struct {
	id, url, secret string
}

// hooksLocked returns the receivers of the event eventType (without its prefix): the
// target of SetWebhookTarget, then each active webhook made through the Webhooks API that
// subscribes to the event type, unless it points at the target (a sandbox whose target is
// zenklav, set up through the API as well, gets each event once). The caller holds s.mu.
func (s *Server) hooksLocked(eventType string) []hook {
	var hooks []hook
	if s.target != "" {
		hooks = append(hooks, hook{id: WebhookID, url: s.target, secret: s.secret})
	}
	for _, w := range s.webhooksLocked() {
		if w.Status == "active" && w.Endpoint != s.target && slices.Contains(w.Subscriptions, eventTypePrefix+eventType) {
			hooks = append(hooks, hook{id: w.ID, url: w.Endpoint, secret: w.SigningSecret})
		}
	}
	return hooks
}

// errNoTarget is the result of a delivery when no webhook target is set and no webhook
// subscribes to the event: Zendesk too sends nothing then.
var errNoTarget = errors.New("no webhook target is set")

// emitLocked queues the event eventType of t. The caller holds s.mu.
func (s *Server) emitLocked(eventType string, t zendesk.Ticket, event map[string]any) {
	body, err := buildEvent(t, s.accountID, s.now(), eventType, event, EventMeta{})
	if err != nil {
		s.logger.Warn("zendesk simulator: event not built", "event", eventType, "err", err)
		return
	}
	s.queueLocked(outgoing{event: eventType, body: body})
}

// emitCommentLocked queues the ticket.comment_added event of cm on t, with done for its
// result. The caller holds s.mu.
func (s *Server) emitCommentLocked(t zendesk.Ticket, cm Comment, done chan error) {
	author, ok := s.userByID(cm.AuthorID)
	body, err := s.commentAddedLocked(t, cm, author, EventMeta{})
	if !ok || err != nil {
		err = fmt.Errorf("build ticket.comment_added: author %d: %v", cm.AuthorID, err)
		s.logger.Warn("zendesk simulator: event not built", "err", err)
		if done != nil {
			done <- err
		}
		return
	}
	s.queueLocked(outgoing{event: "ticket.comment_added", body: body, done: done})
}

// queueLocked adds o to the outbox and starts sending when nothing is. The caller holds
// s.mu.
func (s *Server) queueLocked(o outgoing) {
	o.hooks = s.hooksLocked(o.event)
	if len(o.hooks) == 0 {
		if o.done != nil {
			o.done <- errNoTarget
		}
		return
	}
	s.outbox.queue = append(s.outbox.queue, o)
	if !s.outbox.running {
		s.outbox.running = true
		go s.sendQueued()
	}
}

// sendQueued sends the outbox until it is empty. A delivery that fails is logged (and told
// to whoever waits for it), not retried: tests that need Zendesk's retries resend.
func (s *Server) sendQueued() {
	for {
		s.mu.Lock()
		if len(s.outbox.queue) == 0 {
			s.outbox.running = false
			s.mu.Unlock()
			return
		}
		o := s.outbox.queue[0]
		s.outbox.queue = s.outbox.queue[1:]
		s.mu.Unlock()

		var first error
		for _, h := range o.hooks {
			err := s.deliver(h, o)
			if err != nil {
				s.logger.Warn("zendesk simulator: webhook not delivered", "event", o.event, "webhook_id", h.id, "err", err)
			} else {
				s.logger.Info("zendesk simulator: webhook sent", "event", o.event, "webhook_id", h.id)
			}
			first = cmp.Or(first, err)
		}
		if o.done != nil {
			o.done <- first
		}
	}
}

// deliver sends one webhook to h; an answer other than 2xx is an error.
func (s *Server) deliver(h hook, o outgoing) error {
	resp, err := s.sendSigned(context.Background(), h, o.body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxTargetBody))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: webhook target answered %d: %s", o.event, resp.StatusCode, answer)
	}
	return nil
}

// FlushWebhooks waits until every event webhook that changes made so far has been sent (or
// failed), or ctx ends.
func (s *Server) FlushWebhooks(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		idle := !s.outbox.running && len(s.outbox.queue) == 0
		s.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// AgentReply plays an agent answering in the agent workspace: it adds the comment (public,
// or an internal note) by agentID, a stored agent or admin, and sends the signed
// ticket.comment_added webhook to the webhook target and the webhooks subscribed to it,
// after any webhook queued before it. It returns the comment once they answered; the error
// says when the ticket or agent does not exist, the ticket is closed, or a delivery failed
// (the comment stays). With no receiver the comment is added and nothing is sent. Being another user's update in the
// workspace, it does not count against the API's per-ticket update limit.
func (s *Server) AgentReply(ticketID, agentID int64, body string, public bool) (Comment, error) {
	return s.AgentReplyFiles(ticketID, agentID, body, public)
}

// AgentReplyFiles is AgentReply with files attached to the comment, by name.
func (s *Server) AgentReplyFiles(ticketID, agentID int64, body string, public bool, files ...string) (Comment, error) {
	s.mu.Lock()
	t, ok := s.tickets[ticketID]
	agent, isUser := s.userByID(agentID)
	switch {
	case !ok:
		s.mu.Unlock()
		return Comment{}, fmt.Errorf("agent reply: no ticket %d", ticketID)
	case t.Status == "closed":
		s.mu.Unlock()
		return Comment{}, fmt.Errorf("agent reply: ticket %d is closed", ticketID)
	case !isUser || agent.Role != "agent" && agent.Role != "admin":
		s.mu.Unlock()
		return Comment{}, fmt.Errorf("agent reply: user %d is not an agent", agentID)
	}
	now := s.now()
	cm := s.addCommentLocked(ticketID, Comment{Body: body, Public: public, AuthorID: agentID, Attachments: files}, now)
	t.UpdatedAt = now.UTC().Truncate(time.Second)
	s.tickets[ticketID] = t
	done := make(chan error, 1)
	s.emitCommentLocked(cloneTicket(t), cm, done)
	s.mu.Unlock()
	if err := <-done; err != nil && !errors.Is(err, errNoTarget) {
		return cm, fmt.Errorf("agent reply: %w", err)
	}
	return cm, nil
}
