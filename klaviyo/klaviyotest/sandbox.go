package klaviyotest

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"
)

// sandboxRows bounds the events and the profiles the sandbox shows per account: the page
// refreshes every two seconds, and a bulk import alone can store 10,000 profiles.
const sandboxRows = 200

// sandboxState is what GET /sandbox/events.json answers, and what GET /sandbox shows.
type sandboxState struct {
	Accounts []accountState `json:"accounts"`
}

// accountState is one account of the sandbox.
type accountState struct {
	// Account names the account without giving its key away: the key's first characters
	// and a short fingerprint that tells apart keys that start alike.
	Account string `json:"account"`
	// Answers counts the answers to the account's API requests: accepted (2xx), refused
	// (4xx but 429), throttled (429) and failed (5xx).
	Answers       answerCounts `json:"answers"`
	EventsTotal   int          `json:"events_total"`
	Events        []eventRow   `json:"events"` // newest first, at most 200
	ProfilesTotal int          `json:"profiles_total"`
	Profiles      []profileRow `json:"profiles"` // most recently imported first, at most 200
}

// eventRow is one event an account kept.
type eventRow struct {
	Time       time.Time      `json:"time"`
	Metric     string         `json:"metric"`
	Profile    string         `json:"profile"` // its email, else phone number, else external id
	UniqueID   string         `json:"unique_id,omitempty"`
	Value      *float64       `json:"value,omitempty"`
	Properties map[string]any `json:"properties"`
}

// profileRow is one profile an account imported.
type profileRow struct {
	Identity   string         `json:"identity"`
	Updated    time.Time      `json:"updated"`
	Properties map[string]any `json:"properties"`
}

// snapshot copies what the accounts hold, under the lock, for rendering outside it.
func (s *Server) snapshot() sandboxState {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.accounts))
	for k := range s.accounts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	v := sandboxState{Accounts: make([]accountState, 0, len(keys))}
	for _, k := range keys {
		a := s.accounts[k]
		out := accountState{
			Account:       redact(k),
			Answers:       a.answers,
			EventsTotal:   len(a.events),
			Events:        []eventRow{},
			ProfilesTotal: a.imported(),
			Profiles:      []profileRow{},
		}
		for i := len(a.events) - 1; i >= 0 && len(out.Events) < sandboxRows; i-- {
			e := cloneEvent(a.events[i])
			out.Events = append(out.Events, eventRow{
				Time: e.Time, Metric: e.Metric, Profile: identityOf(e.Profile),
				UniqueID: e.UniqueID, Value: e.Value, Properties: e.Properties,
			})
		}
		type entry struct {
			id string
			p  *profile
		}
		profiles := make([]entry, 0, len(a.profiles))
		for id, p := range a.profiles {
			if p.imported {
				profiles = append(profiles, entry{id, p})
			}
		}
		slices.SortFunc(profiles, func(x, y entry) int { return cmp.Compare(y.p.seq, x.p.seq) })
		for _, e := range profiles[:min(len(profiles), sandboxRows)] {
			out.Profiles = append(out.Profiles, profileRow{Identity: e.id, Updated: e.p.updated, Properties: cloneProperties(e.p.properties)})
		}
		v.Accounts = append(v.Accounts, out)
	}
	return v
}

// redact names a private key on a page anyone on the sandbox's port can read: at most its
// first six characters (fewer for a short key, so the prefix is never the whole key) and
// four hex digits of its SHA-256, too few to help guess it.
func redact(key string) string {
	r := []rune(key)
	sum := sha256.Sum256([]byte(key))
	return string(r[:min(6, len(r)/2)]) + "… #" + hex.EncodeToString(sum[:2])
}

// serveSandbox answers GET /sandbox, a page of what the accounts received that reloads
// itself every two seconds, and GET /sandbox/events.json, the same as JSON.
func (s *Server) serveSandbox(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	if path == "/sandbox/phone" || strings.HasPrefix(path, "/sandbox/phone/") {
		s.servePhone(w, r)
		return
	}
	if path != "/sandbox" && path != "/sandbox/events.json" {
		writeErrors(w, http.StatusNotFound, apiError{Code: "not_found", Title: "Not found.", Detail: "the sandbox serves GET /sandbox, GET /sandbox/events.json and the phone, GET /sandbox/phone"})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeErrors(w, http.StatusMethodNotAllowed, apiError{Code: "method_not_allowed", Title: "Method not allowed.", Detail: "use GET"})
		return
	}
	view := s.snapshot()
	w.Header().Set("Cache-Control", "no-store")
	if path == "/sandbox/events.json" {
		body, err := json.Marshal(view)
		if err != nil {
			http.Error(w, "encode sandbox view: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(body)
		return
	}
	var page bytes.Buffer
	if err := sandboxPage.Execute(&page, view); err != nil {
		http.Error(w, "render sandbox page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	// The page needs nothing from elsewhere; the policy keeps it that way even if a stored
	// property carried markup past the template's escaping.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(page.Bytes())
}

var sandboxPage = template.Must(template.New("sandbox").Funcs(template.FuncMap{
	// The template escapes the JSON for HTML, so it is encoded without json's own escaping
	// of <, > and &, which would show as \u003c on the page.
	"json": func(v any) string {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return "(" + err.Error() + ")"
		}
		return strings.TrimSuffix(b.String(), "\n")
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="2">
<title>Klaviyo simulator</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 2em; } h3 { font-size: 1em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .25em .6em; border-bottom: 1px solid #ddd; }
th { background: #f4f4f4; }
code, pre { font: 12px/1.3 ui-monospace, monospace; }
pre { margin: .3em 0; white-space: pre-wrap; word-break: break-all; }
.counts span { margin-right: 1.5em; }
.muted { color: #777; }
</style>
</head>
<body>
<h1>Klaviyo simulator</h1>
<p class="muted">What the simulated accounts received. Reloads every 2 s; <a href="/sandbox/events.json">JSON</a>.</p>
<p><a href="/sandbox/phone">Text the brand from a customer's phone</a>: the SMS conversation, both ways.</p>
{{range .Accounts}}
<h2>Account <code>{{.Account}}</code></h2>
<p class="counts"><span>202 accepted: <b>{{.Answers.Accepted}}</b></span><span>4xx refused: <b>{{.Answers.Refused}}</b></span><span>429 throttled: <b>{{.Answers.Throttled}}</b></span><span>5xx failed: <b>{{.Answers.Failed}}</b></span></p>
<h3>Events <span class="muted">({{len .Events}} of {{.EventsTotal}}, newest first)</span></h3>
{{if .Events}}<table>
<tr><th>Time</th><th>Metric</th><th>Profile</th><th>unique_id</th><th>Properties</th></tr>
{{range .Events}}<tr><td>{{when .Time}}</td><td>{{.Metric}}</td><td>{{.Profile}}</td><td><code>{{.UniqueID}}</code></td><td><details><summary>properties ({{len .Properties}}){{with .Value}}, value {{.}}{{end}}</summary><pre>{{json .Properties}}</pre></details></td></tr>
{{end}}</table>{{else}}<p class="muted">None yet.</p>{{end}}
<h3>Profiles <span class="muted">({{len .Profiles}} of {{.ProfilesTotal}}, most recently imported first)</span></h3>
{{if .Profiles}}<table>
<tr><th>Profile</th><th>Updated</th><th>Properties</th></tr>
{{range .Profiles}}<tr><td>{{.Identity}}</td><td>{{when .Updated}}</td><td><details><summary>properties ({{len .Properties}})</summary><pre>{{json .Properties}}</pre></details></td></tr>
{{end}}</table>{{else}}<p class="muted">None yet.</p>{{end}}
{{else}}
<p>No accounts.</p>
{{end}}
</body>
</html>
`))
