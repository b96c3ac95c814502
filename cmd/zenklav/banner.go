package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// banner is what zenklav tells a person at start: what runs, where, and how to try it.
type banner struct {
	role       string
	http       string
	routes     []string // what the HTTP server serves, "METHOD /path"
	kafka      string
	clickhouse string
	zendesk    string
	klaviyo    string
	sms        string
	pprof      string
	sandbox    *sandbox
	// reportsToken is a marketer's token for the sandbox connection; empty elsewhere.
	reportsToken string
	// admin is the /admin pages' address when the process serves them; adminToken, in
	// sandbox mode, an admin's token to sign in with.
	admin, adminToken string
}

func (b banner) print(w io.Writer) {
	var s strings.Builder
	fmt.Fprintf(&s, "\nzenklav %s is running\n", b.role)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&s, "  %-11s %s\n", k, v)
		}
	}
	row("http", b.http+"  ("+serves(b.routes)+")")
	row("kafka", b.kafka)
	row("clickhouse", b.clickhouse)
	row("zendesk", b.zendesk)
	row("klaviyo", b.klaviyo)
	row("sms", b.sms)
	row("pprof", b.pprof)
	if b.adminToken == "" {
		row("admin", b.admin)
	}
	if sb := b.sandbox; sb != nil {
		row("zendesk", "SANDBOX MODE: no ZENKLAV_CONNECTIONS_FILE, so Zendesk is a simulator at "+sb.url)
		row("klaviyo", "SANDBOX MODE: Klaviyo is a simulator; watch the metrics arrive at "+sb.klaviyoURL+"/sandbox")
		row("sidebar", "the agent's view of a ticket, with the zenklav app in its sidebar: "+sb.agentPage())
		// An SMS conversation, from both ends: the customer's phone, and the agent's tickets
		// (the sidebar's page links them too, under Tickets).
		row("phone", "text the brand as a customer: "+sb.phonePage())
		row("agent", "answer the texts as an agent (SMS tickets are marked; reply on the ticket): "+sb.agentIndex())
		if b.reportsToken != "" {
			row("reports", "ticket reports for marketers (a 24-hour token for the sandbox): "+b.http+"/reports#token="+b.reportsToken)
		}
		if b.adminToken != "" {
			row("admin", "set up and watch connections: sign in at "+b.admin+" with this 24-hour admin token: "+b.adminToken)
		}
		fmt.Fprintf(&s, "\nSend a correctly signed test webhook (a new ticket):\n\n  %s\n", sb.curlCommand())
		fmt.Fprintf(&s, "\nOr have the simulator send one exactly as Zendesk does:\n\n  curl -sS -X POST '%s/sandbox/webhooks?event=ticket.created'\n", sb.url)
	}
	s.WriteString("\nStop with Ctrl-C.\n\n")
	io.WriteString(w, s.String())
}

// serves says what an HTTP server serves, by method, from its routes ("GET /a", "POST /b",
// "GET /c/:id" → "GET /a /c/{id}, POST /b"): each process lists its own, so a sink does not
// claim the webhooks.
func serves(routes []string) string {
	var methods []string
	paths := map[string][]string{}
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		if _, ok := paths[method]; !ok {
			methods = append(methods, method)
		}
		var parts []string
		for p := range strings.SplitSeq(path, "/") {
			switch {
			case strings.HasPrefix(p, ":"):
				p = "{" + p[1:] + "}"
			case strings.HasPrefix(p, "*"):
				p = "…"
			}
			parts = append(parts, p)
		}
		paths[method] = append(paths[method], strings.Join(parts, "/"))
	}
	slices.Sort(methods)
	out := make([]string, len(methods))
	for i, m := range methods {
		out[i] = m + " " + strings.Join(paths[m], " ")
	}
	return strings.Join(out, ", ")
}
