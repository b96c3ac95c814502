// Package zendeskapp holds the Zendesk sidebar app's package (manifest.json, translations/,
// assets/); its test checks the package against the rules of Zendesk's app validator
// (zendesk_apps_support), so a package that passes here is not refused on upload. The rules
// and their messages: ../shared/reference/zendesk-api.md §6 and
// ../shared/contracts/zendesk/zaf/zendesk_apps_support-locales-en.yml.
package zendeskapp

import (
	"encoding/json"
	"fmt"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

type manifest struct {
	Name   string `json:"name"`
	Author *struct {
		Name  string `json:"name"`
		Email string `json:"email"`
		URL   string `json:"url"`
	} `json:"author"`
	DefaultLocale    string                                `json:"defaultLocale"`
	Location         map[string]map[string]json.RawMessage `json:"location"`
	Parameters       []parameter                           `json:"parameters"`
	DomainWhitelist  []string                              `json:"domainWhitelist"`
	Version          string                                `json:"version"`
	FrameworkVersion string                                `json:"frameworkVersion"`
}

type parameter struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	Required bool     `json:"required"`
	Secure   bool     `json:"secure"`
	Default  any      `json:"default"`
	Scopes   []string `json:"scopes"`
}

type locationOptions struct {
	URL      string `json:"url"`
	Flexible *bool  `json:"flexible"`
}

var (
	parameterTypes = []string{"text", "checkbox", "url", "number", "multiline", "hidden", "oauth"}
	scopes         = []string{"header", "body", "url", "jwt_secret_key", "jwt_claim", "basic_auth_username", "basic_auth_password"}
	tokenLike      = regexp.MustCompile(`(?i)token|key|pwd|password`)
	localeName     = regexp.MustCompile(`^[a-z]{2,3}(-\w{2,3})?$`)
	settingURL     = regexp.MustCompile(`^\{\{setting\.([A-Za-z0-9_]+)\}\}`)
)

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestManifest(t *testing.T) {
	data, err := os.ReadFile("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, problem := range checkManifest(data) {
		t.Error(problem)
	}
}

// checkManifest returns what Zendesk's validator would refuse in a manifest, in its words
// where it has them.
func checkManifest(data []byte) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	// The booleans are checked in raw: decoding a wrong type into the struct would fail
	// before the check could say which field it is.
	var raw map[string]json.RawMessage
	var m manifest
	if err := json.Unmarshal(data, &raw); err != nil {
		return []string{"manifest is not JSON: " + err.Error()}
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return []string{"manifest does not have the validator's shape: " + err.Error()}
	}
	var missing []string
	for _, k := range []string{"author", "defaultLocale", "location", "frameworkVersion"} {
		if _, ok := raw[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		bad("Missing required fields in manifest: %s", strings.Join(missing, ", "))
	}
	if m.Name == "" {
		bad("name is empty: zcli reads it for app.json and apps:create")
	}
	if a := m.Author; a == nil || a.Name == "" || a.Email == "" || a.URL == "" {
		bad("author needs name, email and url")
	} else if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		bad("author url must be a valid URL, got %q", a.URL)
	}
	if m.FrameworkVersion != "2.0" {
		bad("frameworkVersion %q is not one Zendesk serves (2.0)", m.FrameworkVersion)
	}
	for _, k := range []string{"requirementsOnly", "marketingOnly", "singleInstall", "signedUrls", "private"} {
		if v, ok := raw[k]; ok && string(v) != "true" && string(v) != "false" {
			bad("%s must be a boolean, got %s", k, v)
		}
	}
	if string(raw["signedUrls"]) != "true" {
		bad("signedUrls must be true: the backend trusts nothing but Zendesk's signed request")
	}

	params := map[string]parameter{}
	oauth := 0
	for _, p := range m.Parameters {
		switch {
		case p.Name == "" || p.Name == "name":
			bad("parameter name %q is not allowed", p.Name)
		case !slices.Contains(parameterTypes, p.Type):
			bad("parameter %s: type %q is not one of %v", p.Name, p.Type, parameterTypes)
		case p.Type == "hidden" && p.Required:
			bad("parameter %s: a hidden parameter cannot be required", p.Name)
		case p.Type == "oauth" && p.Secure:
			bad("parameter %s: oauth parameter cannot be set to be secure", p.Name)
		case len(p.Scopes) > 0 && !p.Secure:
			bad("parameter %s: scopes are for secure parameters only", p.Name)
		case p.Secure && len(p.Scopes) == 0:
			bad("parameter %s: the scopes property is needed on secure parameters", p.Name)
		case p.Type == "text" && !p.Secure && tokenLike.MatchString(p.Name):
			bad("parameter %s: make sure to set secure to true for a token", p.Name)
		case (p.Secure || p.Type == "hidden") && p.Default != nil:
			bad("parameter %s: default values for secure or hidden parameters are not stored securely", p.Name)
		}
		for _, s := range p.Scopes {
			if !slices.Contains(scopes, s) {
				bad("parameter %s: scope %q is not one of %v", p.Name, s, scopes)
			}
		}
		if _, dup := params[p.Name]; dup {
			bad("Duplicate app parameters defined: %s", p.Name)
		}
		if p.Type == "oauth" {
			oauth++
		}
		params[p.Name] = p
	}
	if oauth > 1 {
		bad("Too many parameters with type 'oauth': one permitted")
	}

	sidebar, ok := m.Location["support"]["ticket_sidebar"]
	if !ok {
		return append(problems, "no support ticket_sidebar location")
	}
	var loc locationOptions
	if err := json.Unmarshal(sidebar, &loc); err != nil {
		return append(problems, "ticket_sidebar: "+err.Error())
	}
	if p := checkLocationURL(loc.URL, params); p != "" {
		bad("%s", p)
	}
	for _, host := range m.DomainWhitelist {
		if host == "" || strings.Contains(host, "/") {
			bad("domainWhitelist entry %q is not a host", host)
		}
	}
	return problems
}

// checkLocationURL applies the validator's rule: https, localhost, a {{setting.x}} template
// of a declared parameter, or an asset of the package. It returns the problem, or "".
func checkLocationURL(raw string, params map[string]parameter) string {
	if m := settingURL.FindStringSubmatch(raw); m != nil {
		p, ok := params[m[1]]
		switch {
		case !ok:
			return fmt.Sprintf("location url %q names the setting %s, which is not a parameter", raw, m[1])
		case p.Secure:
			return fmt.Sprintf("location url %q uses the secure setting %s, which the browser never sees", raw, m[1])
		}
		return ""
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Sprintf("location url %q does not parse", raw)
	case u.Scheme == "https" || u.Hostname() == "localhost":
		return ""
	case u.Scheme == "" && strings.HasPrefix(raw, "assets/"):
		if _, err := os.Stat(raw); err != nil {
			return fmt.Sprintf("location url %q points to a missing asset", raw)
		}
		return ""
	}
	return fmt.Sprintf("location url %q points to a missing asset, or does not use HTTPS", raw)
}

func TestTranslations(t *testing.T) {
	var m manifest
	readJSON(t, "manifest.json", &m)
	files, err := filepath.Glob("translations/*.json")
	if err != nil {
		t.Fatal(err)
	}
	locales := map[string]map[string]any{}
	for _, f := range files {
		locale := strings.TrimSuffix(filepath.Base(f), ".json")
		if !localeName.MatchString(locale) {
			t.Errorf("%s: %q is not a locale name", f, locale)
		}
		var doc map[string]any
		readJSON(t, f, &doc)
		locales[locale] = doc
	}
	if _, ok := locales[m.DefaultLocale]; !ok {
		t.Fatalf("Missing translation file for locale '%s'", m.DefaultLocale)
	}
	if _, ok := locales["es"]; !ok {
		t.Error("no Spanish translation (translations/es.json)")
	}
	want := []string{"app.name", "app.short_description", "app.long_description", "app.installation_instructions"}
	for _, p := range m.Parameters {
		want = append(want, "app.parameters."+p.Name+".label")
	}
	for locale, doc := range locales {
		for _, key := range want {
			if s, ok := lookup(doc, key).(string); !ok || strings.TrimSpace(s) == "" {
				t.Errorf("Missing required key from translations/%s.json: %s", locale, key)
			}
		}
		// Every locale says everything the default one says.
		for _, key := range leaves(locales[m.DefaultLocale], "") {
			if lookup(doc, key) == nil {
				t.Errorf("translations/%s.json lacks %s", locale, key)
			}
		}
	}
}

func lookup(doc map[string]any, key string) any {
	var v any = doc
	for _, part := range strings.Split(key, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	return v
}

func leaves(doc map[string]any, prefix string) []string {
	var out []string
	for k, v := range doc {
		if sub, ok := v.(map[string]any); ok {
			out = append(out, leaves(sub, prefix+k+".")...)
			continue
		}
		out = append(out, prefix+k)
	}
	return out
}

// TestLogos: the sizes the Marketplace asks for, as PNG.
func TestLogos(t *testing.T) {
	for name, size := range map[string]int{"assets/logo.png": 320, "assets/logo-small.png": 128} {
		f, err := os.Open(name)
		if err != nil {
			t.Error(err)
			continue
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if cfg.Width != size || cfg.Height != size {
			t.Errorf("%s is %dx%d, want %dx%d", name, cfg.Width, cfg.Height, size, size)
		}
	}
}

// TestValidatorCatchesBadManifests makes sure the checks can fail: each broken variant of
// the real manifest must be refused, for the reason given.
func TestValidatorCatchesBadManifests(t *testing.T) {
	data, err := os.ReadFile("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		change     func(m map[string]any)
	}{
		{"token not secure", "set secure to true", addParameter(parameter{Name: "api_token", Type: "text"})},
		{"secure without scopes", "scopes property is needed", addParameter(parameter{Name: "secret", Type: "text", Secure: true})},
		{"unknown scope", "is not one of", addParameter(parameter{Name: "secret", Type: "text", Secure: true, Scopes: []string{"everywhere"}})},
		{"hidden and required", "hidden parameter cannot be required", addParameter(parameter{Name: "h", Type: "hidden", Required: true})},
		{"unknown type", "is not one of", addParameter(parameter{Name: "x", Type: "color"})},
		{"reserved name", "is not allowed", addParameter(parameter{Name: "name", Type: "text"})},
		{"secure with a default", "not stored securely", addParameter(parameter{Name: "secret", Type: "text", Secure: true, Scopes: []string{"header"}, Default: "x"})},
		{"duplicate", "Duplicate app parameters", addParameter(parameter{Name: "zenklav_url", Type: "url"})},
		{"no author", "Missing required fields in manifest: author", func(m map[string]any) { delete(m, "author") }},
		{"framework 1.0", "frameworkVersion", func(m map[string]any) { m["frameworkVersion"] = "1.0" }},
		{"not signed", "signedUrls must be true", func(m map[string]any) { m["signedUrls"] = false }},
		{"boolean as string", "must be a boolean", func(m map[string]any) { m["private"] = "yes" }},
		{"http location", "does not use HTTPS", setLocation("http://zenklav.example/app/sidebar")},
		{"missing asset", "missing asset", setLocation("assets/nowhere.html")},
		{"unknown setting", "not a parameter", setLocation("{{setting.elsewhere}}/app")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			tc.change(m)
			changed, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			problems := checkManifest(changed)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("problems %q, want one saying %q", problems, tc.want)
			}
		})
	}
}

func addParameter(p parameter) func(map[string]any) {
	return func(m map[string]any) {
		var asMap map[string]any
		b, _ := json.Marshal(p)
		_ = json.Unmarshal(b, &asMap)
		m["parameters"] = append(m["parameters"].([]any), asMap)
	}
}

func setLocation(u string) func(map[string]any) {
	return func(m map[string]any) {
		m["location"] = map[string]any{"support": map[string]any{"ticket_sidebar": map[string]any{"url": u, "flexible": true}}}
	}
}
