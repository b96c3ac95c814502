package deploy_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/yaml"

	"github.com/zenklav/zenklav/internal/arch"
)

// series are the names of the series zenklav's processes export, each with where it is made:
// the metrics of the code (every prometheus.*Opts literal with a Name, and every
// prometheus.NewDesc of a collector's own, which zenklav uses for gauges read at scrape), with
// _bucket, _sum and _count for histograms, and those of the Go and process collectors it
// registers.
func series(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{"up": "Prometheus (each scrape)"}
	var goCollector, processCollector bool
	for _, f := range moduleFiles(t) {
		ast.Inspect(f.AST, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if kind := optsKind(n.Type); kind != "" {
					if name := optsName(n); name != "" {
						addSeries(out, name, kind, f.Path)
					}
				}
			case *ast.CallExpr:
				if name := descName(n); name != "" {
					addSeries(out, name, "", f.Path)
				}
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && x.Name == "collectors" {
					goCollector = goCollector || n.Sel.Name == "NewGoCollector"
					processCollector = processCollector || n.Sel.Name == "NewProcessCollector"
				}
			}
			return true
		})
	}
	reg := prometheus.NewRegistry()
	if goCollector {
		reg.MustRegister(collectors.NewGoCollector())
	}
	if processCollector {
		reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		kind := map[dto.MetricType]string{dto.MetricType_HISTOGRAM: "histogram", dto.MetricType_SUMMARY: "summary"}[mf.GetType()]
		addSeries(out, mf.GetName(), kind, "client_golang's collectors")
	}
	return out
}

func addSeries(out map[string]string, name, kind, where string) {
	out[name] = where
	switch kind {
	case "histogram":
		out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = where, where, where
		delete(out, name)
	case "summary":
		out[name+"_sum"], out[name+"_count"] = where, where
	}
}

// optsKind says which metric prometheus.XOpts makes, or "" for another type.
func optsKind(e ast.Expr) string {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
		return ""
	}
	return map[string]string{"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram", "SummaryOpts": "summary"}[sel.Sel.Name]
}

// descName is the name a call prometheus.NewDesc("name", …) gives its metric, or "".
func descName(call *ast.CallExpr) string {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "NewDesc" || len(call.Args) == 0 {
		return ""
	}
	if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
		return ""
	}
	return stringLit(call.Args[0])
}

// TestSeriesOfCollectors: the names of the gauges zenklav's own collectors read at scrape
// time are known, as those of the Opts literals are.
func TestSeriesOfCollectors(t *testing.T) {
	known := series(t)
	for _, name := range []string{"zenklav_consumer_lag_messages", "zenklav_klaviyo_limit_allowed_per_second", "zenklav_zendesk_rate_limit_remaining"} {
		if _, ok := known[name]; !ok {
			t.Errorf("%s, made with prometheus.NewDesc, is not among the series found", name)
		}
	}
}

// optsName is the full name an Opts literal gives its metric.
func optsName(lit *ast.CompositeLit) string {
	name := optsField(lit, "Name")
	if name == "" {
		return ""
	}
	return prometheus.BuildFQName(optsField(lit, "Namespace"), optsField(lit, "Subsystem"), name)
}

// promKeywords are PromQL's words that are not metric names where a metric name could stand.
var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
}

// labelLists are the keywords followed by a list of label names in parentheses.
var labelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// promMetrics returns the metric names a PromQL expression selects. It reads what it needs of
// PromQL: strings, label matchers {…}, ranges […], comments, functions and aggregations with
// their label lists, and Grafana's $variables, which it passes over.
func promMetrics(expr string) ([]string, error) {
	var out []string
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{' || c == '[':
			end, err := skipGroup(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '$':
			i++
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '{' || expr[i] == '}') {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\n' || expr[k] == '\t') {
				k++
			}
			called := k < len(expr) && expr[k] == '('
			switch {
			case labelLists[word] && called:
				end, err := skipGroup(expr, k)
				if err != nil {
					return nil, err
				}
				j = end
			case !called && !promKeywords[word]:
				out = append(out, word)
			}
			i = j
		default:
			i++
		}
	}
	return out, nil
}

// skipString returns the index just past the string that starts at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at %d", i)
}

// skipGroup returns the index just past the bracket that closes the one at i.
func skipGroup(s string, i int) (int, error) {
	closing := map[byte]byte{'{': '}', '[': ']', '(': ')'}
	var stack []byte
	for j := i; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case closing[c] != 0:
			stack = append(stack, closing[c])
		case len(stack) > 0 && c == stack[len(stack)-1]:
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("unbalanced %q at %d", s[i], i)
}

func TestPromMetrics(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		want       []string
	}{
		{"bare", `up`, []string{"up"}},
		{"matchers and range", `rate(zenklav_webhooks_total{job=~"$job",result!~"a|b"}[$__rate_interval])`, []string{"zenklav_webhooks_total"}},
		{"aggregation with labels", `sum by (connection, kind) (increase(x_total{kind=~".*_unauthorized"}[10m])) > 0`, []string{"x_total"}},
		{"label list after", `sum(rate(a[5m])) without (instance)`, []string{"a"}},
		{"quantile", `histogram_quantile(0.95, sum by (le) (rate(h_bucket{job=~"$job"}[5m])))`, []string{"h_bucket"}},
		{"binary and vector", `(sum(increase(a[1h])) or vector(0)) + on(job) group_left(x) b unless c == bool 1e3`, []string{"a", "b", "c"}},
		{"label_replace strings", `label_replace(m, "system", "$1", "kind", "(.*)_unauthorized")`, []string{"m"}},
		{"offset and comment", "m offset 5m # a comment naming x\n", []string{"m"}},
		{"braced variable", `time() - max(g{connection=~"${connection}"})`, []string{"g"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := promMetrics(tc.expr)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("promMetrics(%q) = %q, %v; want %q", tc.expr, got, err, tc.want)
			}
		})
	}
}

// checkExpr reports the names in expr that zenklav does not export.
func checkExpr(t *testing.T, where, expr string, known map[string]string) {
	t.Helper()
	names, err := promMetrics(expr)
	if err != nil {
		t.Errorf("%s: %v in %q", where, err, expr)
		return
	}
	if len(names) == 0 {
		t.Errorf("%s: no metric in %q", where, expr)
	}
	for _, n := range names {
		if _, ok := known[n]; !ok {
			t.Errorf("%s: %s is not a metric zenklav exports (%q)", where, n, expr)
		}
	}
}

type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    *struct{ H, W, X, Y int }
	Panels     []panel `json:"panels"`
	Targets    []struct {
		Expr       string          `json:"expr"`
		RefID      string          `json:"refId"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// grafanaVars are the variables Grafana defines itself.
var grafanaVars = []string{"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}

var varRE = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))`)

// TestDashboard: the dashboard is Grafana's JSON, every query uses the datasource variable,
// the variables it defines and the metrics zenklav exports.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("grafana", "zenklav.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("grafana/zenklav.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want both set and a schema of Grafana 10 or later", d.UID, d.Title, d.SchemaVersion)
	}
	known := series(t)
	vars := slices.Clone(grafanaVars)
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query: %v", v.Name, err)
		}
		m := labelValuesRE.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(metric, label)", v.Name, q.Query)
			continue
		}
		checkExpr(t, "variable "+v.Name, m[1], known)
		checkDatasource(t, "variable "+v.Name, v.Datasource)
	}
	if !slices.Contains(vars, "datasource") || !slices.Contains(vars, "connection") {
		t.Errorf("variables %q: want datasource and connection", vars)
	}
	ids := map[int]string{}
	var walk func([]panel)
	exprs := 0
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if prev, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("%s: id shared with %q", where, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
				t.Errorf("%s: no gridPos", where)
			}
			walk(p.Panels)
			if len(p.Targets) > 0 {
				checkDatasource(t, where, p.Datasource)
			}
			for _, tg := range p.Targets {
				exprs++
				checkDatasource(t, where+" "+tg.RefID, tg.Datasource)
				checkExpr(t, where+" "+tg.RefID, tg.Expr, known)
				for _, m := range varRE.FindAllStringSubmatch(tg.Expr, -1) {
					if name := m[1] + m[2]; !slices.Contains(vars, name) {
						t.Errorf("%s %s: $%s is not a variable of the dashboard", where, tg.RefID, name)
					}
				}
			}
		}
	}
	walk(d.Panels)
	if exprs < 20 {
		t.Errorf("%d queries in the dashboard: the panels were not read", exprs)
	}
	promtoolCheck(t, "the dashboard", dashboardRules(t, d))
}

func checkDatasource(t *testing.T, where string, raw json.RawMessage) {
	t.Helper()
	var ds struct{ Type, UID string }
	if err := json.Unmarshal(raw, &ds); err != nil || ds.Type != "prometheus" || ds.UID != "${datasource}" {
		t.Errorf("%s: datasource %s, want the ${datasource} variable", where, raw)
	}
}

// dashboardRules are the dashboard's queries as a rule file, Grafana's variables filled in,
// for promtool to parse.
func dashboardRules(t *testing.T, d dashboard) string {
	t.Helper()
	fill := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "${datasource}", "x", "$job", ".*", "$connection", ".*")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			for _, tg := range p.Targets {
				fmt.Fprintf(&b, "      - record: panel_%d_%s\n        expr: %q\n", p.ID, tg.RefID, fill.Replace(tg.Expr))
			}
		}
	}
	walk(d.Panels)
	return b.String()
}

// promtoolCheck parses rules with Prometheus's promtool when it is installed (Debian's
// prometheus package); without it the check above of the metric names is all.
func promtoolCheck(t *testing.T, what, rules string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Logf("promtool not installed: %s parsed by the names' check only", what)
		return
	}
	p := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(p, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", p).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on %s: %v\n%s", what, err, out)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// TestAlerts: the alert rules use metrics zenklav exports, each says how bad and what happened,
// and the jobs they select are the ones prometheus.yml scrapes.
func TestAlerts(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(raw, &rf); err != nil {
		t.Fatalf("prometheus/alerts.yml: %v", err)
	}
	known := series(t)
	names := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if r.Alert == "" || names[r.Alert] {
				t.Errorf("%s: no name, or a name used twice", where)
			}
			names[r.Alert] = true
			checkExpr(t, where, r.Expr, known)
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", where, r.For, err)
				}
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", where, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want a summary and a description", where)
			}
		}
	}
	for _, want := range []string{"ZenklavPartDown", "ZenklavDeadLetters", "ZenklavReconnect", "ZenklavEmitterLaneFull"} {
		if !names[want] {
			t.Errorf("no alert %s", want)
		}
	}
	promtoolCheck(t, "prometheus/alerts.yml", string(raw))
	checkScrapeJobs(t, string(raw))
}

// checkScrapeJobs: prometheus.yml scrapes one job per role, named as alerts.yml expects, and
// loads the alerts.
func checkScrapeJobs(t *testing.T, alerts string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName string `json:"job_name"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("prometheus/prometheus.yml: %v", err)
	}
	if len(cfg.RuleFiles) != 1 {
		t.Errorf("prometheus.yml loads rule files %q, want the alerts", cfg.RuleFiles)
	}
	var jobs []string
	for _, s := range cfg.ScrapeConfigs {
		jobs = append(jobs, s.JobName)
	}
	var want []string
	for _, r := range roleNames(t) {
		want = append(want, "zenklav-"+r)
	}
	if !slices.Equal(jobs, want) {
		t.Errorf("prometheus.yml scrapes jobs %q, want %q", jobs, want)
	}
	if !strings.Contains(alerts, `job=~"zenklav-.*"`) {
		t.Error(`alerts.yml no longer selects job=~"zenklav-.*": keep it and prometheus.yml's job names together`)
	}
}

// roleNames are the roles of cmd/zenklav's role table, in its order.
func roleNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, f := range moduleFiles(t) {
		if f.Package != arch.Module+"/cmd/zenklav" {
			continue
		}
		for _, d := range f.AST.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, s := range gd.Specs {
				vs, ok := s.(*ast.ValueSpec)
				if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "roles" || len(vs.Values) != 1 {
					continue
				}
				lit, ok := vs.Values[0].(*ast.CompositeLit)
				if !ok {
					continue
				}
				for _, el := range lit.Elts {
					if r, ok := el.(*ast.CompositeLit); ok {
						names = append(names, optsField(r, "name"))
					}
				}
			}
		}
	}
	if len(names) < 4 {
		t.Fatalf("found roles %q in cmd/zenklav: the role table was not read", names)
	}
	return names
}

// optsField is the string literal of a composite literal's field key, or "".
func optsField(lit *ast.CompositeLit, key string) string {
	for _, el := range lit.Elts {
		if kv, ok := el.(*ast.KeyValueExpr); ok {
			if k, ok := kv.Key.(*ast.Ident); ok && k.Name == key {
				return stringLit(kv.Value)
			}
		}
	}
	return ""
}
