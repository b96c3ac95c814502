package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// TestSMSConversation plays a customer's SMS conversation through `zenklav all`, from signed
// Klaviyo webhooks to the Zendesk simulator, with a redelivered text: a campaign SMS, a first
// text that opens a ticket (with the campaign as a note), a burst, a STOP, a closed ticket
// and the follow-up the next text opens; every text on Zendesk exactly once.
func TestSMSConversation(t *testing.T) {
	broker, ch := testenv.Kafka(t), testenv.ClickHouse(t)
	conn := fmt.Sprintf("sms-%d", rand.N(1_000_000))
	const (
		phone  = "+15555550123"
		secret = "klaviyo-webhook-secret-0001"
		key    = "pk_sms_e2e_account"
		brand  = 360001
	)
	dir := t.TempDir()
	zd := zendesktest.NewServer()
	defer zd.Close()
	zd.AddBrand(zendesk.Brand{ID: brand, Name: "Acme SMS"})
	kl := klaviyotest.NewServer()
	defer kl.Close()
	kl.AddAccount(key)
	kl.SetSMSProfile(key, klaviyotest.SMSProfile{Phone: phone, Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace", Consent: klaviyotest.Subscribed})
	conns := filepath.Join(dir, "connections.json")
	if err := os.WriteFile(conns, fmt.Appendf(nil, `{"connections":[{"id":%q,"zendesk":{"subdomain":%q,
		"email":%q,"api_token":%q,"webhook_secrets":[%q],"brands":"all"},"klaviyo":{"private_key":%q,"webhook_secrets":[%q]},
		"sms":{"enabled":true,"brand":%d}}]}`,
		conn, conn, zendesktest.DefaultEmail, zendesktest.DefaultAPIToken, acmeSecret, key, secret, brand), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	base := startZenklavOut(t, map[string]string{
		"ZENKLAV_ZENDESK_BASE_URL": zd.URL, "ZENKLAV_KLAVIYO_BASE_URL": kl.URL, "ZENKLAV_HTTP_ADDR": "127.0.0.1:0",
		"ZENKLAV_KAFKA_BROKERS": broker, "ZENKLAV_CLICKHOUSE_ADDR": ch, "ZENKLAV_CLICKHOUSE_DATABASE": fmt.Sprintf("sms_%d", rand.N(1_000_000)),
		"ZENKLAV_CONNECTIONS_FILE": conns, "ZENKLAV_DATA_DIR": dir,
	}, out)
	send := func(items ...klaviyotest.WebhookItem) {
		t.Helper()
		resp, err := kl.SendWebhook(base+"/webhooks/klaviyo/"+conn, secret, items...)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("webhook answered %d %s", resp.StatusCode, b)
		}
	}
	text := func(id, body string) klaviyotest.WebhookItem {
		return kl.InboundSMSItem(klaviyotest.InboundSMS{EventID: id, From: phone, To: klaviyotest.DefaultSMSNumber, Body: body, SenderType: zenklav.SenderTollFree})
	}
	// comments waits until the tickets hold want comments in all, and returns them by ticket.
	comments := func(want int) ([]zendesk.Ticket, [][]string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			ts := zd.Tickets()
			var all [][]string
			n := 0
			for _, tk := range ts {
				var cs []string
				for _, c := range zd.Comments(tk.ID) {
					cs = append(cs, map[bool]string{true: "public: ", false: "note: "}[c.Public]+c.Body)
				}
				all, n = append(all, cs), n+len(cs)
			}
			if n >= want {
				return ts, all
			}
			if time.Now().After(deadline) {
				t.Fatalf("Zendesk holds %d comments after a minute, want %d: %q\n%s", n, want, all, tail(out.String(), 40))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	send(kl.SentSMSItem(klaviyotest.SentSMS{EventID: "s1", From: klaviyotest.DefaultSMSNumber, To: phone, Body: "Spring sale: 20% off", CampaignName: "Spring sale"}))
	send(text("m1", "Where is my order?"))
	send(text("m1", "Where is my order?")) // Klaviyo delivers it again
	ts, cs := comments(2)
	if len(ts) != 1 || ts[0].BrandID != brand || !slices.Contains(ts[0].Tags, zenklav.TagSMS) || !strings.HasPrefix(ts[0].Subject, "SMS: Where is my order?") {
		t.Fatalf("first text: tickets %+v", ts)
	}
	if cs[0][0] != "public: Where is my order?" || !strings.Contains(cs[0][1], "Spring sale: 20% off") {
		t.Errorf("first text: comments %q", cs[0])
	}
	// The agents' replies: a public one goes to the customer by SMS, an internal note does
	// not, nor does the reply of an agent with the customer's email (the agent is told).
	zd.SetWebhookTarget(base+"/webhooks/zendesk/"+conn, acmeSecret)
	agent := zd.AddUser(zendesk.User{Name: "Grace", Email: "grace@acme.example", Role: "agent"})
	twin := zd.AddUser(zendesk.User{Name: "Ada at Acme", Email: "ada@example.com", Role: "agent"})
	for _, r := range []struct {
		by     int64
		body   string
		public bool
	}{{agent.ID, "It ships **tomorrow**: <a href=\"x\">track</a>", true}, {agent.ID, "internal: check the warehouse", false}, {twin.ID, "I am the customer too", true}} {
		if _, err := zd.AgentReply(ts[0].ID, r.by, r.body, r.public); err != nil {
			t.Fatal(err)
		}
	}
	conversation, _ := kl.ConversationID(key, phone)
	deadline := time.Now().Add(time.Minute)
	for len(kl.ConversationMessages(conversation)) < 1 || !slices.ContainsFunc(zd.Comments(ts[0].ID), func(c zendesktest.Comment) bool {
		return strings.Contains(c.Body, "was not sent by SMS")
	}) {
		if time.Now().After(deadline) {
			t.Fatalf("replies: Klaviyo got %q, the ticket holds %+v\n%s", kl.ConversationMessages(conversation), zd.Comments(ts[0].ID), tail(out.String(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := kl.ConversationMessages(conversation); len(got) != 1 || got[0] != "It ships tomorrow: track" {
		t.Errorf("SMS sent to the customer: %q, want the public reply only, as plain text", got)
	}
	zd.SetWebhookTarget("", "")
	send(text("m2", "Hello?"), text("m3", "STOP"))
	ts, cs = comments(8) // with the three replies and the note of the same-email one
	if !slices.Contains(cs[0], "public: Hello?") || !slices.ContainsFunc(cs[0], func(c string) bool { return strings.HasPrefix(c, "note: The customer texted STOP") }) {
		t.Errorf("burst and STOP: comments %q", cs[0])
	}
	// Solved: the next text reopens the ticket. Two texts whose webhooks come in the wrong
	// order take the order Klaviyo says they were sent in.
	if _, err := zd.UpdateTicket(ts[0].ID, func(tk *zendesk.Ticket) { tk.Status = zenklav.StatusSolved }); err != nil {
		t.Fatal(err)
	}
	send(text("m5", "Still broken"))
	ts, cs = comments(9)
	if tk, _ := zd.Ticket(ts[0].ID); tk.Status != zenklav.StatusOpen || cs[0][8] != "public: Still broken" {
		t.Errorf("text on a solved ticket: status %s, comments %q", tk.Status, cs[0])
	}
	at := time.Now()
	later := kl.InboundSMSItem(klaviyotest.InboundSMS{EventID: "m7", From: phone, To: klaviyotest.DefaultSMSNumber, Body: "and the box too", SenderType: zenklav.SenderTollFree, Time: at.Add(time.Second)})
	earlier := kl.InboundSMSItem(klaviyotest.InboundSMS{EventID: "m6", From: phone, To: klaviyotest.DefaultSMSNumber, Body: "the lid is cracked", SenderType: zenklav.SenderTollFree, Time: at})
	send(later, earlier)
	ts, cs = comments(10)
	if cs[0][9] != "public: the lid is cracked\n\nand the box too" {
		t.Errorf("texts delivered out of order: %q", cs[0][9])
	}
	// Closed: a follow-up; a late redelivery of the first text does nothing; an agent's reply
	// on the follow-up goes out too.
	if _, err := zd.UpdateTicket(ts[0].ID, func(tk *zendesk.Ticket) { tk.Status = zenklav.StatusClosed }); err != nil {
		t.Fatal(err)
	}
	send(text("m4", "One more thing"), text("m1", "Where is my order?"))
	ts, cs = comments(12)
	if len(ts) != 2 || cs[1][0] != "public: One more thing" || len(cs[0]) != 10 {
		t.Fatalf("after the ticket closed: tickets %+v comments %q", ts, cs)
	}
	first := 0
	for _, c := range slices.Concat(cs...) {
		if c == "public: Where is my order?" {
			first++
		}
	}
	if first != 1 {
		t.Errorf("the redelivered text is on Zendesk %d times", first)
	}
	zd.SetWebhookTarget(base+"/webhooks/zendesk/"+conn, acmeSecret)
	// reply has the agent answer publicly on ticket, and waits for it to be the customer's
	// sent-th SMS.
	reply := func(ticket int64, body string, sent int) {
		t.Helper()
		if _, err := zd.AgentReply(ticket, agent.ID, body, true); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for len(kl.ConversationMessages(conversation)) < sent {
			if time.Now().After(deadline) {
				t.Fatalf("reply %q: Klaviyo got %q", body, kl.ConversationMessages(conversation))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := kl.ConversationMessages(conversation); len(got) != sent || got[sent-1] != body {
			t.Errorf("SMS sent to the customer: %q, want %q last of %d", got, body, sent)
		}
	}
	reply(ts[1].ID, "A new box is on its way.", 2)
	// Three more texts on the follow-up, one at a time, and a last reply: ten texts and five
	// replies in all.
	for i, body := range []string{"Thanks!", "When will it arrive?", "Got it, all good"} {
		send(text(fmt.Sprintf("m%d", 8+i), body))
		_, cs = comments(14 + i) // the reply above and each text
		if last := cs[1][len(cs[1])-1]; last != "public: "+body {
			t.Errorf("text %q on the follow-up: last comment %q", body, last)
		}
	}
	reply(ts[1].ID, "Glad to help!", 3)
}
