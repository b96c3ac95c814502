package zendeskapp

import (
	"bytes"
	"encoding/json"
	"html/template"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// sidebarData has exactly the fields the backend passes to web/sidebar.html.
type sidebarData struct {
	Session        string
	SessionExpires int64
	Assets         string
	Lang           string
	Theme          string
}

// errorData has exactly the fields the backend passes to web/error.html.
type errorData struct {
	Title, Message, Lang, Assets, Theme string
}

func render(t *testing.T, name string, data any) string {
	t.Helper()
	tmpl, err := template.ParseFS(Web, "web/"+name)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatalf("execute %s: %v", name, err)
	}
	return b.String()
}

var (
	scriptTag   = regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`)
	styleTag    = regexp.MustCompile(`(?i)<style\b`)
	styleAttr   = regexp.MustCompile(`(?i)\sstyle\s*=`)
	handlerAttr = regexp.MustCompile(`(?i)<[^>]*\son[a-z]+\s*=`)
	jsURL       = regexp.MustCompile(`(?i)javascript:`)
)

// checkCSPSafe reports what a CSP of script-src 'self' and style-src 'self' would block.
func checkCSPSafe(t *testing.T, name, page string) {
	t.Helper()
	for _, m := range scriptTag.FindAllStringSubmatch(page, -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("%s: inline script: %s", name, m[0])
		}
	}
	if styleTag.MatchString(page) {
		t.Errorf("%s: has a <style> element", name)
	}
	if styleAttr.MatchString(page) {
		t.Errorf("%s: has a style attribute", name)
	}
	if handlerAttr.MatchString(page) {
		t.Errorf("%s: has an inline event handler", name)
	}
	if jsURL.MatchString(page) {
		t.Errorf("%s: has a javascript: URL", name)
	}
}

func TestSidebarPage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    sidebarData
		want    []string
		notWant []string
	}{
		{
			name: "english",
			data: sidebarData{Session: "tok.en.sig", SessionExpires: 1764000000, Assets: "/app/web/", Lang: "en"},
			want: []string{
				`<html lang="en">`,
				`<meta name="zenklav-session" content="tok.en.sig">`,
				`<meta name="zenklav-session-expires" content="1764000000">`,
				`<link rel="stylesheet" href="/app/web/sidebar.css">`,
				`<script src="/app/web/zaf_sdk.js" defer></script>`,
				`<script src="/app/web/messages.js" defer></script>`,
				`<script src="/app/web/sidebar.js" defer></script>`,
				`data-testid="sidebar" data-state="loading"`,
				`Loading Klaviyo profile…`,
			},
		},
		{
			name: "spanish",
			data: sidebarData{Session: "t", SessionExpires: 1, Assets: "/app/web/", Lang: "es"},
			want: []string{`<html lang="es">`, `Cargando el perfil de Klaviyo…`},
		},
		{
			// Zendesk's colour scheme, from the page's URL, applies before any script runs.
			name: "dark",
			data: sidebarData{Session: "t", SessionExpires: 1, Assets: "/app/web/", Lang: "en", Theme: "dark"},
			want: []string{`<html lang="en" data-theme="dark">`},
		},
		{
			name:    "hostile values are escaped",
			data:    sidebarData{Session: `"><script>alert(1)</script>`, SessionExpires: 2, Assets: `javascript:alert(1)//`, Lang: `en"><b>`},
			notWant: []string{`<script>alert(1)`, `src="javascript:`, `<b>`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page := render(t, "sidebar.html", tc.data)
			checkCSPSafe(t, "sidebar.html", page)
			for _, w := range tc.want {
				if !strings.Contains(page, w) {
					t.Errorf("page lacks %s\n%s", w, page)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(page, w) {
					t.Errorf("page has %s\n%s", w, page)
				}
			}
		})
	}
}

func TestErrorPage(t *testing.T) {
	page := render(t, "error.html", errorData{Title: "Access refused", Message: `The Zendesk token has expired <reopen>`, Lang: "en", Assets: "/app/web/0123abcd/"})
	checkCSPSafe(t, "error.html", page)
	for _, w := range []string{
		`<html lang="en">`,
		`<title>Access refused</title>`,
		`The Zendesk token has expired &lt;reopen&gt;`,
		`data-state="error"`,
		`href="/app/web/0123abcd/sidebar.css"`,
	} {
		if !strings.Contains(page, w) {
			t.Errorf("error page lacks %s\n%s", w, page)
		}
	}
	if strings.Contains(page, "<script") {
		t.Error("error page has a script")
	}
}

func TestWebFiles(t *testing.T) {
	for _, name := range []string{"sidebar.html", "error.html", "zaf_sdk.js", "messages.js", "sidebar.js", "sidebar.css"} {
		data, err := fs.ReadFile(Web, "web/"+name)
		if err != nil {
			t.Errorf("Web lacks %s: %v", name, err)
		} else if len(data) == 0 {
			t.Errorf("web/%s is empty", name)
		}
	}

	js := readWeb(t, "sidebar.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(js, bad) {
			t.Errorf("sidebar.js uses %s: data must go in as text", bad)
		}
	}
	// The hooks tests find things by: the root is in sidebar.html, the rest in sidebar.js
	// (section(name, …) and chipSection(name, …) set data-testid to name).
	if !strings.Contains(readWeb(t, "sidebar.html"), `data-testid="sidebar"`) {
		t.Error(`sidebar.html has no data-testid="sidebar"`)
	}
	for _, hook := range []string{"notice", "retry", "profile", "consent", "predictions", "activity", "segments", "lists", "support"} {
		if !strings.Contains(js, `'data-testid': '`+hook+`'`) && !strings.Contains(js, `section('`+hook+`'`) && !strings.Contains(js, `chipSection('`+hook+`'`) {
			t.Errorf("sidebar.js has no data-testid %q", hook)
		}
	}

	css := readWeb(t, "sidebar.css")
	// Dark is chosen by data-theme alone: the server sets it from Zendesk's colorScheme, the
	// script from Zendesk or else the browser's prefers-color-scheme.
	for _, want := range []string{`:root[data-theme="dark"]`, `@media (prefers-reduced-motion: reduce)`} {
		if !strings.Contains(css, want) {
			t.Errorf("sidebar.css lacks %s", want)
		}
	}
}

// TestMessages checks that English and Spanish have the same keys, none empty, and that every
// key sidebar.js asks for exists.
func TestMessages(t *testing.T) {
	src := readWeb(t, "messages.js")
	const prefix = "window.ZENKLAV_MESSAGES = "
	i := strings.Index(src, prefix)
	if i < 0 {
		t.Fatalf("messages.js does not assign %s", prefix)
	}
	body := strings.TrimSpace(src[i+len(prefix):])
	body = strings.TrimSuffix(body, ";")
	var msgs map[string]map[string]string
	if err := json.Unmarshal([]byte(body), &msgs); err != nil {
		t.Fatalf("messages.js is not a JSON object literal: %v", err)
	}
	en, es := msgs["en"], msgs["es"]
	if len(en) == 0 || len(es) == 0 {
		t.Fatalf("messages.js has %d English and %d Spanish strings", len(en), len(es))
	}
	for k, v := range en {
		if strings.TrimSpace(v) == "" {
			t.Errorf("en.%s is empty", k)
		}
		if w, ok := es[k]; !ok {
			t.Errorf("es lacks %s", k)
		} else if strings.TrimSpace(w) == "" {
			t.Errorf("es.%s is empty", k)
		} else if placeholders(v) != placeholders(w) {
			t.Errorf("en.%s and es.%s have different placeholders: %q, %q", k, k, v, w)
		}
	}
	for k := range es {
		if _, ok := en[k]; !ok {
			t.Errorf("en lacks %s", k)
		}
	}

	js := readWeb(t, "sidebar.js")
	used := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bt\('([a-z_]+)'\s*[,)]`).FindAllStringSubmatch(js, -1) {
		used[m[1]] = true
	}
	// Keys that sidebar.js builds from a name.
	for _, s := range []string{"profile", "activity", "segments", "lists", "support"} {
		used["section_"+s] = true
	}
	for _, s := range []string{"low", "medium", "high"} {
		used["churn_"+s] = true
	}
	for _, s := range []string{"segments", "lists"} {
		used[s+"_heading"], used[s+"_none"] = true, true
	}
	for k := range used {
		if _, ok := en[k]; !ok {
			t.Errorf("sidebar.js uses message %q, which messages.js lacks", k)
		}
	}
}

var placeholder = regexp.MustCompile(`\{\w+\}`)

func placeholders(s string) string {
	p := placeholder.FindAllString(s, -1)
	slices.Sort(p)
	return strings.Join(p, ",")
}

func readWeb(t *testing.T, name string) string {
	t.Helper()
	data, err := fs.ReadFile(Web, "web/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
