package resilience_test

import (
	"fmt"
	"io"
	"os"
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

// TestSMSRoleKilled: `zenklav sms` is killed with kill -9 while ten customers text and again
// while agents reply, and started again at once. Every text is on Zendesk exactly once, and
// every reply reached its customer exactly once, or (if the kill fell between Klaviyo's 202
// and zenklav's record of it) not again, with a note telling the agent: never twice.
func TestSMSRoleKilled(t *testing.T) {
	s := newStack(t)
	const klaviyoSecret = "resilience-klaviyo-webhook-secret"
	s.zd.AddBrand(zendesk.Brand{ID: 360001, Name: "SMS"})
	if err := os.WriteFile(s.conns, fmt.Appendf(nil, `{"connections":[{"id":%q,"zendesk":{"subdomain":%q,
		"email":%q,"api_token":%q,"webhook_secrets":[%q],"brands":"all"},"klaviyo":{"private_key":%q,"webhook_secrets":[%q]},
		"sms":{"enabled":true,"brand":360001}}]}`,
		tenant, tenant, zendesktest.DefaultEmail, zendesktest.DefaultAPIToken, secret, klaviyoKey, klaviyoSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	var phones []string
	for i := range 10 {
		phone := fmt.Sprintf("+1555000%04d", 10+i)
		s.kl.SetSMSProfile(klaviyoKey, klaviyotest.SMSProfile{Phone: phone, FirstName: "Customer", LastName: fmt.Sprint(i),
			Email: fmt.Sprintf("sms%d@example.com", i), Consent: klaviyotest.Subscribed})
		phones = append(phones, phone)
	}
	apiAddr, smsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	s.startAndWait("api", apiAddr)
	p := s.startAndWait("sms", smsAddr)
	restart := func() {
		killed := time.Now()
		p.kill()
		p = s.startAndWait("sms", smsAddr)
		t.Logf("sms killed and started again in %s", time.Since(killed).Round(10*time.Millisecond))
	}

	// Texts: 60, round robin over the customers, ten a second; the kill after the 25th.
	url := "http://" + apiAddr + "/webhooks/klaviyo/" + tenant
	for i := range 60 {
		item := s.kl.InboundSMSItem(klaviyotest.InboundSMS{EventID: fmt.Sprintf("text-%d", i), From: phones[i%len(phones)],
			To: klaviyotest.DefaultSMSNumber, Body: fmt.Sprintf("text %d.", i), SenderType: zenklav.SenderTollFree})
		sendUntilAccepted(t, url, klaviyoSecret, s.kl, item)
		if i == 25 {
			restart()
		}
		time.Sleep(100 * time.Millisecond) // the pace of the customers
	}
	texts := waitForTexts(t, s.zd, 60)
	for i, n := range texts {
		if n != 1 {
			t.Errorf("text %d is on Zendesk %d times, want once", i, n)
		}
	}

	// Replies: one per ticket, an agent answering; the kill after the fourth.
	s.zd.SetWebhookTarget("http://"+apiAddr+"/webhooks/zendesk/"+tenant, secret)
	agent := s.zd.AddUser(zendesk.User{Name: "Agent", Email: "agent@acme.example", Role: "agent"})
	var tickets []zendesk.Ticket // zenklav's SMS tickets, not the sample the stack seeds
	for _, tk := range s.zd.Tickets() {
		seeded := slices.ContainsFunc(s.sample.Tickets, func(x zendesk.Ticket) bool { return x.ID == tk.ID })
		if slices.Contains(tk.Tags, zenklav.TagSMS) && !seeded {
			tickets = append(tickets, tk)
		}
	}
	if len(tickets) != len(phones) {
		var desc []string
		for _, tk := range tickets {
			var cs []string
			for _, c := range s.zd.Comments(tk.ID) {
				cs = append(cs, fmt.Sprintf("%q by %d at %s", c.Body, c.AuthorID, c.CreatedAt.Format("15:04:05.000")))
			}
			desc = append(desc, fmt.Sprintf("ticket %d requester %d: %s", tk.ID, tk.RequesterID, strings.Join(cs, "; ")))
		}
		t.Fatalf("%d SMS tickets for %d customers, want one each:\n%s", len(tickets), len(phones), strings.Join(desc, "\n"))
	}
	for i, tk := range tickets {
		if _, err := s.zd.AgentReply(tk.ID, agent.ID, fmt.Sprintf("reply %d.", tk.ID), true); err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			restart()
		}
	}
	waitForReplies(t, s, tickets, phones)
}

// sendUntilAccepted sends a webhook until zenklav answers 202, as Klaviyo retries.
func sendUntilAccepted(t *testing.T, url, secret string, kl *klaviyotest.Server, item klaviyotest.WebhookItem) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := kl.SendWebhook(url, secret, item)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 202 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook %v not accepted within a minute: %v", item.ExternalID, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitForTexts waits until each of n texts is on a Zendesk ticket, and returns how many times
// each is, once nothing has changed for a few seconds (a second copy would come late).
func waitForTexts(t *testing.T, zd *zendesktest.Server, n int) []int {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var counts []int
	for stable := 0; stable < 10; {
		next := make([]int, n)
		for _, tk := range zd.Tickets() {
			for _, c := range zd.Comments(tk.ID) {
				for i := range n {
					if c.Public && strings.Contains(c.Body, fmt.Sprintf("text %d.", i)) {
						next[i] += strings.Count(c.Body, fmt.Sprintf("text %d.", i))
					}
				}
			}
		}
		all := !strings.Contains(fmt.Sprint(next), " 0") && next[0] != 0
		if all && fmt.Sprint(next) == fmt.Sprint(counts) {
			stable++
		} else {
			stable = 0
		}
		counts = next
		if time.Now().After(deadline) {
			t.Fatalf("texts on Zendesk after two minutes: %v", counts)
		}
		time.Sleep(300 * time.Millisecond)
	}
	return counts
}

// waitForReplies waits until every ticket's reply reached its customer once, or was noted
// as uncertain, and checks none arrived twice.
func waitForReplies(t *testing.T, s *stack, tickets []zendesk.Ticket, phones []string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		done, report := 0, ""
		for _, tk := range tickets {
			body := fmt.Sprintf("reply %d.", tk.ID)
			sent := 0
			for _, phone := range phones {
				conv, _ := s.kl.ConversationID(klaviyoKey, phone)
				for _, m := range s.kl.ConversationMessages(conv) {
					if m == body {
						sent++
					}
				}
			}
			uncertain := false
			for _, c := range s.zd.Comments(tk.ID) {
				uncertain = uncertain || !c.Public && strings.Contains(c.Body, "may not have got it")
			}
			if sent > 1 {
				t.Fatalf("%s reached the customer %d times", body, sent)
			}
			if sent == 1 || uncertain {
				done++
			}
			report += fmt.Sprintf(" %d:%d/%v", tk.ID, sent, uncertain)
		}
		if done == len(tickets) {
			t.Logf("replies (ticket:sent/noted uncertain):%s", report)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replies after two minutes (ticket:sent/noted uncertain):%s", report)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
