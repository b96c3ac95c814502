package zendesktest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestAgentReplyBox replies on a ticket page's form as its script does, publicly and as a
// note, and reads the comments back; a form from another site, an empty reply and one on a
// closed ticket are refused.
func TestAgentReplyBox(t *testing.T) {
	sim, base, sample := newAgentSandbox(t)
	ticket := sample.Tickets[2] // the sample's SMS ticket
	post := func(id int64, origin string, form url.Values) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/agent/tickets/%d/comments", base, id), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct {
		name   string
		id     int64
		origin string
		form   url.Values
		status int
	}{
		{"public", ticket.ID, base, url.Values{"body": {"It ships <b>tomorrow</b>"}}, http.StatusOK},
		{"note", ticket.ID, base, url.Values{"body": {"check the warehouse"}, "public": {"false"}}, http.StatusOK},
		{"other site", ticket.ID, "http://evil.example", url.Values{"body": {"hi"}}, http.StatusForbidden},
		{"empty", ticket.ID, base, url.Values{"body": {" "}}, http.StatusUnprocessableEntity},
		{"solved", sample.Tickets[3].ID, base, url.Values{"body": {"hi"}}, http.StatusOK}, // a solved ticket takes replies
	} {
		if status, body := post(tt.id, tt.origin, tt.form); status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, status, body, tt.status)
		}
	}
	resp, err := http.Get(fmt.Sprintf("%s/agent/tickets/%d/comments.json", base, ticket.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var conv struct {
		Comments []struct {
			Body, Author string
			Public       bool
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&conv); err != nil {
		t.Fatal(err)
	}
	agent := sample.Agents[0].Name
	if len(conv.Comments) != 2 || conv.Comments[0].Body != "It ships <b>tomorrow</b>" || !conv.Comments[0].Public ||
		conv.Comments[1].Public || conv.Comments[0].Author != agent {
		t.Errorf("comments: %+v, want the public reply and the note by %s", conv.Comments, agent)
	}
	if got := sim.Comments(ticket.ID); len(got) != 2 {
		t.Errorf("the simulator holds %d comments, want 2", len(got))
	}
	page := getAgentPage(t, base, fmt.Sprintf("/agent/tickets/%d", ticket.ID))
	if !strings.Contains(page.body, "It ships &lt;b&gt;tomorrow&lt;/b&gt;") || !strings.Contains(page.body, `id="reply-form"`) {
		t.Errorf("the ticket page does not show the escaped reply and the reply box:\n%s", page.body)
	}
	// The index marks the SMS ticket, in the page and in the JSON its script polls.
	resp, err = http.Get(base + "/agent/tickets.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tickets []struct {
		ID  int64
		SMS bool
	}
	if err := json.NewDecoder(resp.Body).Decode(&tickets); err != nil {
		t.Fatal(err)
	}
	for _, tk := range tickets {
		if tk.SMS != (tk.ID == ticket.ID) {
			t.Errorf("ticket %d: sms %v", tk.ID, tk.SMS)
		}
	}
}
