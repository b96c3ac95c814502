package resilience_test

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/sms"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// The SMS traffic of the replicas test: customers texting, agents answering on their tickets.
const (
	smsCustomerCount = 20
	// textsPerSecond is the customers' pace, all together: about a dozen texts each in the
	// run, well under Zendesk's 30 updates of a ticket in 10 minutes, so no text waits out a
	// 429 of minutes.
	textsPerSecond = 3
	// replyEvery is how many texts come between two agents' replies: one every two seconds,
	// half of Klaviyo's 60 conversation messages a minute for the account.
	replyEvery = 6
)

// smsTraffic is customers texting the brand and agents answering them, through the webhook
// deliveries of the Zendesk traffic (traffic.send), to the api processes in turn: text i,
// "text i.", every beat, from the customers in turn (textItem); every replyEvery-th beat an
// agent's public reply, "reply k.", on the SMS tickets zenklav made by then, in turn, added in
// the Zendesk simulator and its ticket.comment_added webhook sent as Zendesk would.
type smsTraffic struct {
	s      *stack
	tr     *traffic
	phones []string
	agent  zendesk.User
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	mu      sync.Mutex
	texts   int
	replies []agentReply
	errs    []string
}

// sendSMS starts the customers texting and the agents replying, until stop.
func (s *stack) sendSMS(tr *traffic, phones []string) *smsTraffic {
	st := &smsTraffic{s: s, tr: tr, phones: phones, done: make(chan struct{}),
		agent: s.zd.AddUser(zendesk.User{Name: "SMS Agent", Email: "sms-agent@acme.example", Role: "agent"})}
	// Registered after the traffic's: it stops first, so nothing is sent once that waits.
	s.t.Cleanup(st.stop)
	st.wg.Go(st.run)
	return st
}

func (st *smsTraffic) run() {
	beat := time.Second / textsPerSecond
	next := time.Now()
	for n := 0; ; n++ {
		select {
		case <-st.done:
			return
		case <-time.After(time.Until(next)):
		}
		next = maxTime(next.Add(beat), time.Now())
		item := st.s.textItem(n, st.phones)
		st.tr.send(&hook{text: &item})
		st.mu.Lock()
		st.texts = n + 1
		st.mu.Unlock()
		if n%replyEvery == replyEvery-1 {
			st.reply()
		}
	}
}

// reply has an agent answer on the next SMS ticket in turn, if there is one yet.
func (st *smsTraffic) reply() {
	var tickets []zendesk.Ticket
	for _, tk := range st.s.zd.Tickets() {
		if tk.BrandID == smsBrand.ID && slices.Contains(tk.Tags, zenklav.TagSMS) {
			tickets = append(tickets, tk)
		}
	}
	if len(tickets) == 0 {
		return
	}
	st.mu.Lock()
	k := len(st.replies)
	st.mu.Unlock()
	slices.SortFunc(tickets, func(a, b zendesk.Ticket) int { return int(a.ID - b.ID) })
	tk := tickets[k%len(tickets)]
	requester, _ := st.s.zd.User(tk.RequesterID)
	r := agentReply{ticket: tk.ID, phone: requester.Phone, body: fmt.Sprintf("reply %d.", k)}
	// No webhook target is set: AgentReply adds the comment and sends nothing, and the
	// webhook goes with the others, resent until accepted.
	c, err := st.s.zd.AgentReply(tk.ID, st.agent.ID, r.body, true)
	var body []byte
	meta := zendesktest.EventMeta{ID: fmt.Sprintf("%08d-0000-4000-8000-%012d", 3, k)}
	if err == nil {
		body, err = st.s.zd.TicketCommentAdded(tk.ID, c, meta)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err != nil {
		st.errs = append(st.errs, fmt.Sprintf("%s on ticket %d: %v", r.body, tk.ID, err))
		return
	}
	st.replies = append(st.replies, r)
	st.tr.send(&hook{eventID: "zd:" + meta.ID, ticket: tk.ID, body: body})
}

// stop sends no more texts or replies (those sent are delivered with the traffic's).
func (st *smsTraffic) stop() {
	st.once.Do(func() { close(st.done) })
	st.wg.Wait()
}

// expect checks, once the webhooks are in, that each text is on Zendesk once, on its
// customer's one SMS ticket, and that each reply reached its customer once (or the agent was
// told it may not have).
func (st *smsTraffic) expect(t *testing.T) {
	t.Helper()
	st.mu.Lock()
	texts, replies, errs := st.texts, slices.Clone(st.replies), st.errs
	st.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("agents' replies not made: %s", strings.Join(errs, "; "))
	}
	if texts < len(st.phones) {
		t.Fatalf("%d texts for %d customers: too few to check", texts, len(st.phones))
	}
	var twice []string
	for i, n := range waitForTexts(t, st.s.zd, texts) {
		if n != 1 && len(twice) < 5 {
			twice = append(twice, fmt.Sprintf("text %d ×%d (%s)", i, n, st.whereText(i)))
		}
		if n != 1 {
			t.Errorf("text %d is on Zendesk %d times, want once", i, n)
		}
	}
	if len(twice) > 0 {
		t.Logf("the first texts not once: %s", strings.Join(twice, "; "))
	}
	smsTickets(t, st.s, st.phones)
	waitForReplies(t, st.s, replies, time.Minute)
	t.Logf("sms: %d texts from %d customers, each once on their SMS ticket; %d agents' replies", texts, len(st.phones), len(replies))
}

// whereText says which comments hold text i, and when they were made.
func (st *smsTraffic) whereText(i int) string {
	var out []string
	for _, tk := range st.s.zd.Tickets() {
		for _, c := range st.s.zd.Comments(tk.ID) {
			if slices.ContainsFunc(textNumber.FindAllStringSubmatch(c.Body, -1), func(m []string) bool { return m[1] == strconv.Itoa(i) }) {
				out = append(out, fmt.Sprintf("ticket %d comment %d at %s", tk.ID, c.ID, c.CreatedAt.Format("15:04:05.000")))
			}
		}
	}
	return strings.Join(out, ", ")
}

// smsWork is what an sms process had done at a moment of the test, as its metrics said at
// its last scrape before.
type smsWork struct {
	name, when string
	counts     map[string]float64 // "messages commented", "replies sent"…
}

// workOf is what m did so far.
func workOf(m *member, when string) smsWork { return smsWork{m.name, when, m.parts.smsCounts()} }

// texts is how many texts it wrote to Zendesk, in tickets or comments.
func (w smsWork) texts() float64 {
	n := 0.0
	for _, r := range []string{"ticket_created", "followed_up", "commented", "reopened"} {
		n += w.counts["messages "+r]
	}
	return n
}

// expectSMSWork logs what the sms processes did, and fails the test unless each had written
// texts before it was stopped or killed, and the one started while another ran (a rebalance
// that gives it partitions) had too before the kill: else the texts did not go through the
// changes the test makes, and it shows nothing about them.
func expectSMSWork(t *testing.T, work []smsWork) {
	t.Helper()
	for _, w := range work {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(w.counts)) {
			parts = append(parts, fmt.Sprintf("%s %g", k, w.counts[k]))
		}
		t.Logf("%s %s: %s", w.name, w.when, strings.Join(parts, ", "))
		if w.texts() == 0 {
			t.Errorf("%s had written no text to Zendesk %s: no partition of %s came its way", w.name, w.when, sms.EventsTopic)
		}
	}
}
