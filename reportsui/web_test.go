package reportsui_test

import (
	"bytes"
	"html/template"
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/zenklav/zenklav/reportsui"
)

// TestPage executes index.html as the backend does and checks that it loads only its own
// files, under Assets, with no inline script or style for the CSP to refuse.
func TestPage(t *testing.T) {
	tmpl, err := template.ParseFS(reportsui.Web, "web/index.html")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, map[string]string{"Assets": "/reports/web/v1/"}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, f := range []string{"reports.css", "charts.js", "reports.js"} {
		if !strings.Contains(page, `"/reports/web/v1/`+f+`"`) {
			t.Errorf("the page does not load %s under Assets", f)
		}
		if _, err := fs.Stat(reportsui.Web, "web/"+f); err != nil {
			t.Errorf("web/%s: %v", f, err)
		}
	}
	for name, re := range map[string]*regexp.Regexp{
		"inline script":    regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]`),
		"script elsewhere": regexp.MustCompile(`<script[^>]*src="(?:https?:)?//`),
		"style element":    regexp.MustCompile(`<style`),
		"style attribute":  regexp.MustCompile(`\sstyle=`),
		"event handler":    regexp.MustCompile(`\son[a-z]+=`),
	} {
		if loc := re.FindStringIndex(page); loc != nil {
			t.Errorf("%s in index.html: %q", name, page[loc[0]:min(len(page), loc[1]+40)])
		}
	}
}

// TestScriptWritesNoMarkup keeps data out of markup: reports.js builds the page with
// textContent and DOM calls, and the charts draw on canvas with canvas tooltips.
func TestScriptWritesNoMarkup(t *testing.T) {
	js, err := fs.ReadFile(reportsui.Web, "web/reports.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'"} {
		if bytes.Contains(js, []byte(bad)) {
			t.Errorf("reports.js uses %s", bad)
		}
	}
	if n, want := bytes.Count(js, []byte("renderMode: 'richText'")), 1; n != want {
		t.Errorf("reports.js sets the tooltips' renderMode to richText %d times, want %d (the one tooltip helper)", n, want)
	}
}
