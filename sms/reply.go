package sms

import (
	"context"
	"fmt"
	"html"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstatus"
	"github.com/zenklav/zenklav/internal/retry"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
)

// ReplyGroup is the consumer group of the agents' replies, on ticket-events.v1.
const ReplyGroup = "zenklav-sms-replies"

// Replies sends an agent's public reply on an SMS ticket to the customer through Klaviyo's
// Conversations API, so it leaves from the number the customer wrote to and shows in Klaviyo
// too. A lane handler on ticket-events.v1, one lane per connection.
//
// What zenklav guarantees: a reply is sent at most once. Before sending it records the reply
// as being sent (the ticket's reply record in ConversationsTopic) and after, as sent; Klaviyo
// answers 202 without a message id, so if zenklav is killed between the two, it cannot know
// whether Klaviyo took it: it does not send it again but tells the agent so in an internal
// note. An error answer from Klaviyo means it did not take the message: that is retried.
type Replies struct {
	cfg     Config
	logger  *slog.Logger
	dlq     *kafka.DeadLetters
	retry   retry.Policy
	metrics *prometheus.CounterVec
	delay   prometheus.ObserverVec // by connection: the comment's webhook in → Klaviyo took the SMS
	// since is when the sms role first ran anywhere (Begin): replies received before it are
	// history, never texted.
	since time.Time
}

// repliesSinceKey is the record, beside the conversations, of when the sms role first ran.
const repliesSinceKey = "replies-since"

// Begin reads when the sms role first ran, recording now when it never did, before any reply
// is routed. A new consumer group reads ticket-events.v1 from its start: without this, the
// first start on a history of agents' replies to tickets tagged sms (such as Klaviyo's own
// integration leaves) would text every one of them again.
func (h *Replies) Begin(ctx context.Context, now time.Time) error {
	if err := h.cfg.Store.Sync(ctx); err != nil {
		return err
	}
	if raw, ok := h.cfg.Store.Get(repliesSinceKey); ok {
		return h.since.UnmarshalText(raw)
	}
	raw, _ := now.UTC().MarshalText()
	if err := h.cfg.Store.Put(ctx, repliesSinceKey, raw); err != nil {
		return err
	}
	h.since = now
	return nil
}

var _ kafka.LaneHandler[*reply] = (*Replies)(nil)

// reply is an agent's public comment on an SMS ticket.
type reply struct {
	Connection  string
	EventID     string
	TicketID    int64
	RequesterID int64
	AuthorID    int64
	CommentID   int64
	Body        string
	Received    time.Time // when zenklav took the comment's webhook in
}

// replyState is a ticket's record of the replies sent to its customer.
type replyState struct {
	Sent    []string `json:"sent,omitempty"`    // event ids, newest last
	Sending string   `json:"sending,omitempty"` // the reply being sent
}

// NewReplies returns the reply handler.
func NewReplies(logger *slog.Logger, reg prometheus.Registerer, cfg Config, dlq *kafka.DeadLetters) (*Replies, error) {
	if cfg.Store == nil || dlq == nil || cfg.Routes == nil {
		return nil, fmt.Errorf("sms replies: need routes, a store and a dead-letter topic")
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = 15 * time.Minute
	}
	if cfg.Status == nil {
		cfg.Status = noStatus{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Replies{cfg: cfg, logger: logger, dlq: dlq,
		retry: retry.Policy{Initial: 200 * time.Millisecond, Max: 30 * time.Second},
		metrics: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "zenklav_sms_replies_total",
			Help: "Agents' public replies on SMS tickets by connection and result: sent, refused (the agent told), same_email, delayed, uncertain (zenklav stopped while sending), duplicate, history (received before the sms role first ran: never texted).",
		}, []string{"connection", "result"}),
		delay: promauto.With(reg).NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zenklav_sms_reply_delay_seconds",
			Help:    "From an agent's reply reaching zenklav (the Zendesk webhook) to Klaviyo taking the SMS, by connection: Klaviyo's 60 a minute shows here.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300},
		}, []string{"connection"}),
	}, nil
}

// Route keeps an agent-looking public comment on an SMS ticket of a connection with SMS; the
// rest weighs nothing.
func (h *Replies) Route(m kafka.Message) (kafka.Routed[*reply], error) {
	var e schemas.TicketEvent
	if err := schemas.DecodeTicketEvent(m.Value, &e); err != nil {
		return kafka.Routed[*reply]{}, nil // the sink dead-letters what does not decode
	}
	if e.Type != schemas.TicketCommentAdded || e.Comment == nil || !e.Comment.Public || !slices.Contains(e.Ticket.Tags, zenklav.TagSMS) {
		return kafka.Routed[*reply]{}, nil
	}
	if _, ok := h.cfg.Routes.Current(e.Connection); !ok {
		// SMS is off for the connection (or it is gone): its agents' replies are not texted.
		return kafka.Routed[*reply]{}, nil
	}
	if e.ReceivedAt.Before(h.since) {
		h.metrics.WithLabelValues(e.Connection, "history").Inc()
		return kafka.Routed[*reply]{}, nil
	}
	if e.Comment.AuthorID != 0 && e.Comment.AuthorID == e.Ticket.Requester.ID {
		// The customer's own comment (every text zenklav writes is one): no need to ask
		// Zendesk who wrote it.
		return kafka.Routed[*reply]{}, nil
	}
	return kafka.Routed[*reply]{Lane: e.Connection, Weight: 1, Value: &reply{
		Connection: e.Connection, EventID: e.EventID, TicketID: e.Ticket.ID, RequesterID: e.Ticket.Requester.ID,
		AuthorID: e.Comment.AuthorID, CommentID: e.Comment.ID, Body: e.Comment.Body, Received: e.ReceivedAt,
	}}, nil
}

// Ready lets a lane form its batch at once; SendMessage waits for Klaviyo's limit.
func (h *Replies) Ready(context.Context, string) error { return nil }

// MaxWeight is the most replies a batch holds.
func (h *Replies) MaxWeight(string) int { return 20 }

// Handle sends a connection's replies in order.
func (h *Replies) Handle(ctx, sendCtx context.Context, lane string, batch []*kafka.Delivery[*reply]) {
	r, _ := h.cfg.Routes.Last(lane)
	if h.retry.Do(ctx, h.logger, "sms replies: catching up with the records failed, retrying", h.cfg.Store.Sync) != nil {
		return
	}
	for _, d := range batch {
		if !h.deliver(ctx, sendCtx, r, d) {
			return // shutting down: the rest is handled again after a restart
		}
	}
}

// deliver sends one reply, retrying what may pass; it says false when ctx ended first.
func (h *Replies) deliver(ctx, sendCtx context.Context, r Route, d *kafka.Delivery[*reply]) bool {
	for attempt := 0; ; attempt++ {
		err := h.send(sendCtx, r, d.Value)
		if err == nil {
			d.Done()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		failed(h.cfg.Status, r.Connection.ID, err)
		if !zenklav.Transient(err) || time.Since(d.Fetched) >= h.cfg.RetryFor {
			h.refused(sendCtx, r, d, err)
			return true
		}
		retry.Log(ctx, h.logger, "sms reply failed, retrying", attempt, err, "connection", r.Connection.ID, "ticket", d.Value.TicketID)
		if retry.Wait(ctx, max(h.retry.Delay(attempt), zenklav.RetryAfter(err))) != nil {
			return false
		}
	}
}

// refused tells the agent the customer did not get the reply, and dead-letters it.
func (h *Replies) refused(ctx context.Context, r Route, d *kafka.Delivery[*reply], err error) {
	h.note(ctx, r, d.Value, "The customer did not get this reply by SMS: "+zenklav.ErrorMessage(err))
	if h.dlq.Write(ctx, kafka.DeadLetter{Msg: d.Msg, Reason: err.Error(), Response: zenklav.Response(err),
		Extra: map[string]string{kafka.HeaderConnection: r.Connection.ID, kafka.HeaderTicket: fmt.Sprint(d.Value.TicketID)}}) != nil {
		return
	}
	h.count(r, "refused")
	d.Done()
}

// send applies the guide's rules to one reply and sends it.
func (h *Replies) send(ctx context.Context, r Route, rep *reply) error {
	key := fmt.Sprintf("reply/%s/%d", rep.Connection, rep.TicketID)
	st, err := h.load(key)
	if err != nil || slices.Contains(st.Sent, rep.EventID) {
		if err == nil {
			h.count(r, "duplicate")
		}
		return err
	}
	if st.Sending == rep.EventID {
		h.count(r, "uncertain")
		h.note(ctx, r, rep, "zenklav stopped while sending this reply to Klaviyo, which does not say whether it took it: "+
			"the customer may not have got it. It is not sent again, so that it never arrives twice; send it again if needed.")
		return h.sent(ctx, key, st, rep.EventID)
	}
	to, skip, err := h.recipient(ctx, r, rep)
	if err != nil || skip {
		return err
	}
	body := plainText(rep.Body)
	if body == "" {
		return nil
	}
	// The delay the agent sees: the replies queued before this one (in Kafka, behind
	// Klaviyo's limit) and the limit's own wait now.
	wait := r.Klaviyo.MessageDelay()
	if !rep.Received.IsZero() {
		wait += time.Since(rep.Received)
	}
	if wait > time.Minute {
		h.count(r, "delayed")
		h.note(ctx, r, rep, fmt.Sprintf("This reply reaches the customer about %s after it was written: Klaviyo sends at most 60 SMS a minute for the account.", wait.Round(time.Second)))
	}
	st.Sending = rep.EventID
	if err := h.save(ctx, key, st); err != nil {
		return err
	}
	if err := r.Klaviyo.SendMessage(ctx, to, body); err != nil {
		st.Sending = "" // Klaviyo answered: it did not take it
		if serr := h.save(ctx, key, st); serr != nil {
			return serr
		}
		return klaviyoErr(err)
	}
	h.count(r, "sent")
	h.cfg.Status.SMS(r.Connection.ID, connstatus.Outbound, h.cfg.Now())
	h.noteAttachments(ctx, r, rep)
	if !rep.Received.IsZero() {
		h.delay.WithLabelValues(r.Connection.ID).Observe(time.Since(rep.Received).Seconds())
	}
	return h.sent(ctx, key, st, rep.EventID)
}

// recipient is the conversation id the reply goes to; skip is true when the rules say not to
// send it (the author is not an agent, or has the customer's email: the agent is told).
func (h *Replies) recipient(ctx context.Context, r Route, rep *reply) (conversation string, skip bool, err error) {
	author, err := r.Directory.FindUser(ctx, rep.AuthorID)
	if err != nil {
		return "", false, zendeskErr(err)
	}
	if author.Role == "end-user" || author.Role == "" {
		return "", true, nil // the customer's own comment, or one zenklav wrote for them
	}
	requester, err := r.Directory.FindUser(ctx, rep.RequesterID)
	if err != nil {
		return "", false, zendeskErr(err)
	}
	if !zenklav.IsE164(requester.Phone) {
		return "", false, zenklav.Errorf(zenklav.EINVALID, "the requester has no phone number to text")
	}
	p, found, err := r.Klaviyo.ProfileByPhone(ctx, requester.Phone)
	if err != nil {
		return "", false, klaviyoErr(err)
	}
	if !found || p.SMSConsent == nil || p.SMSConsent.Consent != "SUBSCRIBED" {
		return "", false, zenklav.Errorf(zenklav.EFORBIDDEN, "%s is not subscribed to SMS in Klaviyo (or texted STOP)", requester.Phone)
	}
	if author.Email != "" && strings.EqualFold(author.Email, p.Email) {
		h.count(r, "same_email")
		h.note(ctx, r, rep, "This reply was not sent by SMS: the replying agent has the customer's email address ("+author.Email+"), and Klaviyo's rule is to send nothing then.")
		return "", true, nil
	}
	conv, err := r.Klaviyo.SMSConversation(ctx, p.ID)
	if err != nil {
		return "", false, klaviyoErr(err)
	}
	return conv, false, nil
}

// noteAttachments tells the agent which files of a sent reply the customer did not get: an SMS
// carries text only. (The webhook does not say whether a comment has files, so Zendesk is
// asked; a failure to ask only costs the note.)
func (h *Replies) noteAttachments(ctx context.Context, r Route, rep *reply) {
	if rep.CommentID == 0 {
		return
	}
	files, err := r.Desk.CommentAttachments(ctx, rep.TicketID, rep.CommentID)
	if err != nil {
		h.logger.Warn("sms reply: could not read the reply's attachments", "connection", rep.Connection, "ticket", rep.TicketID, "err", err)
		return
	}
	if len(files) > 0 {
		h.note(ctx, r, rep, "The customer got the text of this reply by SMS, without its attachments ("+strings.Join(files, ", ")+"): an SMS carries text only.")
	}
}

// note adds an internal note to the reply's ticket; it is best effort, as the reply's outcome
// is recorded in the metrics and the dead letters either way.
func (h *Replies) note(ctx context.Context, r Route, rep *reply, body string) {
	if err := r.Desk.Comment(ctx, rep.TicketID, zenklav.DeskComment{Body: body}, ""); err != nil {
		h.logger.Warn("sms reply: could not add a note to the ticket", "connection", rep.Connection, "ticket", rep.TicketID, "err", err)
	}
}

func (h *Replies) sent(ctx context.Context, key string, st replyState, id string) error {
	st.Sending = ""
	st.Sent = append(st.Sent, id)
	if n := len(st.Sent) - maxHandled; n > 0 {
		st.Sent = slices.Delete(st.Sent, 0, n)
	}
	return h.save(ctx, key, st)
}

func (h *Replies) load(key string) (replyState, error) {
	var st replyState
	return st, load(h.cfg.Store, key, &st)
}

func (h *Replies) save(ctx context.Context, key string, st replyState) error {
	return save(ctx, h.cfg.Store, key, st)
}

func (h *Replies) count(r Route, result string) {
	h.metrics.WithLabelValues(r.Connection.ID, result).Inc()
}

var (
	htmlTag      = regexp.MustCompile(`(?s)<[^>]*>`)
	markdownLink = regexp.MustCompile(`\[([^\]]*)\]\(([^)\s]+)\)`)
	emphasis     = regexp.MustCompile("(\\*\\*|__|\\*|`)")
	blankLines   = regexp.MustCompile(`\n{3,}`)
)

// plainText reduces a comment's HTML or Markdown to the text of an SMS: tags dropped (line
// breaks kept), entities decoded, links written as "text (url)", emphasis marks dropped.
func plainText(s string) string {
	s = strings.NewReplacer("<br>", "\n", "<br/>", "\n", "<br />", "\n", "</p>", "\n\n").Replace(s)
	s = html.UnescapeString(htmlTag.ReplaceAllString(s, ""))
	s = markdownLink.ReplaceAllString(s, "$1 ($2)")
	s = emphasis.ReplaceAllString(s, "")
	return strings.TrimSpace(blankLines.ReplaceAllString(s, "\n\n"))
}
