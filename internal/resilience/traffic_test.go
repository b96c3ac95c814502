package resilience_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// webhookTimeout is how long Zendesk gives a webhook endpoint to answer.
const webhookTimeout = 10 * time.Second

// stopWithin bounds how long the webhooks sent may take to be accepted once no new ones
// are sent: with every dependency back, the first resend (Retry-After: a few seconds) is.
const stopWithin = time.Minute

// traffic is Zendesk sending signed webhooks to zenklav at a steady rate: two for each
// ticket, ticket.created and then, one beat later, ticket.status_changed to closed, which
// make its Opened Ticket and its Resolved Ticket. As Zendesk's deliveries, each webhook is
// sent on its own, independent of the others: answered 503 (or anything but 2xx), it is sent
// again after Retry-After; when the connection fails, after a short pause; until zenklav
// accepts it. Webhooks of other kinds (an agent's reply, a customer's text) may join them
// (send), delivered alike.
type traffic struct {
	s      *stack
	addrs  []string      // the api processes, sent to in turn
	sends  atomic.Uint64 // requests so far: which address is next
	client *http.Client
	beat   time.Duration
	start  time.Time

	stopping   chan struct{} // closed: no new webhooks
	stopOnce   sync.Once
	giveUp     chan struct{} // closed: deliveries stop resending
	giveUpOnce sync.Once
	pacer      sync.WaitGroup
	deliveries sync.WaitGroup

	mu       sync.Mutex
	attempts []attempt
	hooks    []*hook
}

// hook is one webhook and what became of it.
type hook struct {
	eventID  string // "zd:" and Zendesk's event id: event_id in ClickHouse; "" for a text
	ticket   int64
	uniqueID string // the Klaviyo unique_id of the metric it makes; "" when it makes none
	body     []byte
	// text, when set, makes the hook Klaviyo's system webhook of a customer's text (to
	// sms-events.v1, not ClickHouse), signed at each attempt as Klaviyo signs; body is then
	// unused.
	text      *klaviyotest.WebhookItem
	firstSent time.Time
	acked     time.Time // when zenklav first answered 2xx; zero until then
}

// attempt is one POST of a webhook and its answer.
type attempt struct {
	hook       *hook
	sent, done time.Time
	status     int // 0 when there was no answer
	retryAfter string
	err        error
}

// kind names the answer: the status, or what happened to the connection.
func (a attempt) kind() string {
	var ne net.Error
	switch {
	case a.err == nil:
		return strconv.Itoa(a.status)
	case errors.Is(a.err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(a.err, syscall.ECONNRESET), errors.Is(a.err, io.EOF), errors.Is(a.err, io.ErrUnexpectedEOF):
		return "connection reset"
	case errors.As(a.err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer within %s", webhookTimeout)
	}
	return "error"
}

func (a attempt) ok() bool { return a.err == nil && a.status >= 200 && a.status < 300 }

// sendWebhooks starts sending webhooks to the zenklav whose HTTP listener is addr, perSecond
// of them a second, until stop.
func (s *stack) sendWebhooks(addr string, perSecond int) *traffic {
	return s.sendWebhooksTo([]string{addr}, perSecond)
}

// sendWebhooksTo is sendWebhooks to several zenklav processes, each request to the next of
// addrs in turn, as a load balancer in front of the api's replicas sends them.
func (s *stack) sendWebhooksTo(addrs []string, perSecond int) *traffic {
	tr := &traffic{
		s: s, addrs: addrs,
		// A connection per request: an idle keep-alive connection the server closes just as
		// a request goes out would fail that request, and the test would blame zenklav.
		client:   &http.Client{Timeout: webhookTimeout, Transport: &http.Transport{DisableKeepAlives: true}},
		beat:     time.Second / time.Duration(perSecond),
		start:    time.Now(),
		stopping: make(chan struct{}), giveUp: make(chan struct{}),
	}
	// Whatever happened, nothing is sent once the test ends.
	s.t.Cleanup(func() {
		tr.stopOnce.Do(func() { close(tr.stopping) })
		tr.abort()
		tr.pacer.Wait()
		tr.deliveries.Wait()
	})
	tr.pacer.Go(tr.pace)
	return tr
}

// pace sends a webhook every beat until stopping: a new ticket's created, then its closed.
// Behind time (the machine was busy), it goes on from now rather than in a burst.
func (tr *traffic) pace() {
	next := time.Now()
	var pending *hook
	for n := 1; ; n++ {
		select {
		case <-tr.stopping:
			if pending != nil { // every ticket that opened also closes
				tr.deliveries.Go(func() { tr.deliver(pending) })
			}
			return
		case <-time.After(time.Until(next)):
		}
		next = maxTime(next.Add(tr.beat), time.Now())
		h := pending
		if h == nil {
			var created *hook
			created, pending = tr.newTicket((n + 1) / 2)
			h = created
		} else {
			pending = nil
		}
		tr.deliveries.Go(func() { tr.deliver(h) })
	}
}

// newTicket adds ticket i to the Zendesk simulator, and returns the webhooks of its creation
// and of its closing.
func (tr *traffic) newTicket(i int) (created, closed *hook) {
	s := tr.s
	tk := s.zd.AddTicket(zendesk.Ticket{
		Subject: fmt.Sprintf("Order %d", i), Description: "Where is my order?", Status: "new",
		Priority: "normal", Type: "question", Via: zendesk.Via{Channel: "web"},
		RequesterID: s.customers[i%len(s.customers)].ID, AssigneeID: s.sample.Agents[0].ID,
		GroupID: s.sample.Group.ID, BrandID: s.sample.Brand.ID,
	})
	meta := func(kind int) zendesktest.EventMeta {
		return zendesktest.EventMeta{ID: fmt.Sprintf("%08d-0000-4000-8000-%012d", kind, i)}
	}
	createdBody, err := s.zd.TicketCreated(tk.ID, meta(1))
	if err != nil {
		panic(err) // the simulator's own ticket: cannot fail
	}
	if _, err := s.zd.UpdateTicket(tk.ID, func(t *zendesk.Ticket) { t.Status = zenklav.StatusClosed }); err != nil {
		panic(err)
	}
	closedBody, err := s.zd.TicketStatusChanged(tk.ID, "solved", meta(2))
	if err != nil {
		panic(err)
	}
	uid := func(t zenklav.Transition) string { return fmt.Sprintf("zendesk:%s:%d:%s", tenant, tk.ID, t.Name) }
	created = &hook{eventID: "zd:" + meta(1).ID, ticket: tk.ID, uniqueID: uid(zenklav.Opened), body: createdBody}
	closed = &hook{eventID: "zd:" + meta(2).ID, ticket: tk.ID, uniqueID: uid(zenklav.Resolved), body: closedBody}
	tr.mu.Lock()
	tr.hooks = append(tr.hooks, created, closed)
	tr.mu.Unlock()
	return created, closed
}

// deliver sends h until zenklav accepts it, or until giveUp.
func (tr *traffic) deliver(h *hook) {
	failed := 0
	for {
		a := tr.post(h)
		if a.ok() {
			return
		}
		// The connection failed: a short pause, longer each time, as Zendesk backs off.
		pause := min(250*time.Millisecond<<failed, 5*time.Second)
		failed++
		if a.err == nil {
			failed = 0
			pause = time.Second
			if secs, err := strconv.Atoi(a.retryAfter); err == nil && secs > 0 {
				pause = min(time.Duration(secs)*time.Second, 30*time.Second)
			}
		}
		select {
		case <-tr.giveUp:
			return
		case <-time.After(pause):
		}
	}
}

// send delivers h besides the paced webhooks, as they are delivered, until zenklav accepts
// it. Not after stop.
func (tr *traffic) send(h *hook) {
	tr.mu.Lock()
	tr.hooks = append(tr.hooks, h)
	tr.mu.Unlock()
	tr.deliveries.Go(func() { tr.deliver(h) })
}

// post sends h once, signed as Zendesk (or Klaviyo, for a text) signs, and records the
// answer.
func (tr *traffic) post(h *hook) attempt {
	a := attempt{hook: h, sent: time.Now()}
	req := tr.request(h, tr.addrs[(tr.sends.Add(1)-1)%uint64(len(tr.addrs))], a.sent)
	resp, err := tr.client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		a.status, a.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	}
	a.err, a.done = err, time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if h.firstSent.IsZero() {
		h.firstSent = a.sent
	}
	if a.ok() && h.acked.IsZero() {
		h.acked = a.done
	}
	tr.attempts = append(tr.attempts, a)
	return a
}

// request is h's POST to the api process at addr, signed at time at.
func (tr *traffic) request(h *hook, addr string, at time.Time) *http.Request {
	if h.text != nil {
		req, err := tr.s.kl.WebhookRequest("http://"+addr+"/webhooks/klaviyo/"+tenant, klaviyoSecret, *h.text)
		if err != nil {
			panic(err) // the simulator's own item: cannot fail
		}
		return req
	}
	ts := zendesk.Timestamp(at)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks/zendesk/"+tenant, bytes.NewReader(h.body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Zendesk Webhook")
	req.Header.Set(zendesk.HeaderWebhookID, zendesktest.WebhookID)
	req.Header.Set(zendesk.HeaderSignatureTimestamp, ts)
	req.Header.Set(zendesk.HeaderSignature, zendesk.Sign(secret, ts, h.body))
	return req
}

// stop sends no new webhook, and waits until every one sent is accepted (for within at
// most, then the rest give up and the test fails).
func (tr *traffic) stop(within time.Duration) {
	tr.s.t.Helper()
	tr.stopOnce.Do(func() { close(tr.stopping) })
	tr.pacer.Wait()
	done := make(chan struct{})
	go func() {
		tr.deliveries.Wait()
		close(done)
	}()
	why := "given up when zenklav exited"
	select {
	case <-done:
	case <-time.After(within):
		why = fmt.Sprintf("resent for %s after the last was sent", within)
		tr.abort()
		<-done
	}
	if n := len(tr.unacked()); n > 0 {
		tr.s.t.Errorf("%d webhooks were never accepted (%s); answers: %s", n, why, tr.summary(time.Time{}, time.Now()))
	}
}

// abort makes every delivery give up now.
func (tr *traffic) abort() { tr.giveUpOnce.Do(func() { close(tr.giveUp) }) }

// acked returns the webhooks zenklav accepted.
func (tr *traffic) acked() []*hook {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []*hook
	for _, h := range tr.hooks {
		if !h.acked.IsZero() {
			out = append(out, h)
		}
	}
	return out
}

func (tr *traffic) unacked() []*hook {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []*hook
	for _, h := range tr.hooks {
		if h.acked.IsZero() {
			out = append(out, h)
		}
	}
	return out
}

// sentAfter returns, by event id and by Klaviyo unique id, the webhooks first sent after t:
// no process that was gone at t can have handled them.
func (tr *traffic) sentAfter(t time.Time) map[string]bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := map[string]bool{}
	for _, h := range tr.hooks {
		if h.firstSent.After(t) {
			out[h.eventID], out[h.uniqueID] = true, true
		}
	}
	return out
}

// firstAcceptedAfter is when zenklav first answered 2xx to a webhook sent after t, or zero.
func (tr *traffic) firstAcceptedAfter(t time.Time) time.Time {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var first time.Time
	for _, a := range tr.attempts {
		if a.ok() && a.sent.After(t) && (first.IsZero() || a.done.Before(first)) {
			first = a.done
		}
	}
	return first
}

// waitAccepted waits until zenklav has accepted n webhooks.
func (tr *traffic) waitAccepted(n int, within time.Duration, alive func() error) {
	tr.s.t.Helper()
	waitFor(tr.s.t, within, alive, func() (bool, string) {
		got := len(tr.acked())
		return got >= n, fmt.Sprintf("zenklav accepted %d webhooks, want %d; answers: %s", got, n, tr.summary(time.Time{}, time.Now()))
	})
}

// answers returns the attempts answered (or failed) in [from, to).
func (tr *traffic) answers(from, to time.Time) []attempt {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []attempt
	for _, a := range tr.attempts {
		if !a.done.Before(from) && a.done.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

// summary counts the answers given in [from, to) by kind, e.g. "202×1040,
// 503×96".
func (tr *traffic) summary(from, to time.Time) string {
	n := map[string]int{}
	as := tr.answers(from, to)
	for _, a := range as {
		n[a.kind()]++
	}
	var kinds []string
	for k := range n {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s×%d", k, n[k]))
	}
	return fmt.Sprintf("%d requests: %s", len(as), strings.Join(parts, ", "))
}

// expectAnswers fails the test for each answer given in [from, to) that allowed rejects (up
// to ten are shown), with the time since start.
func (tr *traffic) expectAnswers(t *testing.T, from, to, start time.Time, want string, allowed func(a attempt) bool) {
	t.Helper()
	var bad []string
	n := 0
	for _, a := range tr.answers(from, to) {
		if allowed(a) {
			continue
		}
		n++
		if len(bad) < 10 {
			detail := a.kind()
			if a.err != nil {
				detail += " (" + a.err.Error() + ")"
			}
			bad = append(bad, fmt.Sprintf("  sent %s, after %s: %s", rel(a.sent, start), a.done.Sub(a.sent).Round(time.Millisecond), detail))
		}
	}
	if n > 0 {
		t.Errorf("%d webhook requests were not answered %s; the first:\n%s\nall answers: %s",
			n, want, strings.Join(bad, "\n"), tr.summary(from, to))
	}
}

// accepted2xxOr503 is what a webhook may be answered while a dependency is away: accepted, or
// 503 with Retry-After.
func accepted2xxOr503(a attempt) bool {
	return a.ok() || a.err == nil && a.status == http.StatusServiceUnavailable && a.retryAfter != ""
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
