package arch_test

import (
	"go/ast"
	"testing"

	"github.com/zenklav/zenklav/internal/arch"
)

func files(t *testing.T) []arch.File {
	t.Helper()
	root, err := arch.Root()
	if err != nil {
		t.Fatal(err)
	}
	fs, err := arch.Files(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) < 50 {
		t.Fatalf("read %d Go files under %s: not the module", len(fs), root)
	}
	return fs
}

// TestImportRules: an adapter imports no other adapter, the HTTP adapter imports no consumer
// role, only cmd/zenklav imports config, and the domain (the root package) imports no part of
// zenklav but the wire contracts. Tests may import anything they exercise.
func TestImportRules(t *testing.T) {
	for _, f := range files(t) {
		if f.Test {
			continue
		}
		for _, imp := range f.Imports() {
			if reason := arch.Forbidden(f.Package, imp); reason != "" {
				t.Errorf("%s imports %s: %s", f.Path, imp, reason)
			}
		}
	}
}

// TestFunctionSize: no function outside tests and generated code is longer than
// arch.MaxFunctionLines.
func TestFunctionSize(t *testing.T) {
	for _, f := range files(t) {
		if f.Test || f.Generated() {
			continue
		}
		for _, d := range f.AST.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			from, to := f.Fset.Position(fn.Pos()).Line, f.Fset.Position(fn.End()).Line
			if n := to - from + 1; n > arch.MaxFunctionLines {
				t.Errorf("%s:%d: %s is %d lines, over %d", f.Path, from, fn.Name.Name, n, arch.MaxFunctionLines)
			}
		}
	}
}

// TestForbidden checks the rule itself on the cases it is for.
func TestForbidden(t *testing.T) {
	m := arch.Module + "/"
	for _, tc := range []struct {
		from, to string
		bad      bool
	}{
		{m + "analytics", m + "kafka", true},
		{m + "klaviyo", m + "zendesk", true},
		{m + "klaviyo/klaviyotest", m + "klaviyo", false},
		{m + "analytics/analyticstest", m + "analytics", false},
		{m + "kafka/kafkatest", m + "analytics", true},
		{m + "backend", m + "emitter", true},
		{m + "backend", m + "sink", true},
		{m + "backend", m + "ingest", false},
		{m + "sidebar", m + "config", true},
		{m + "cmd/zenklav", m + "config", false},
		{m + "cmd/zenklav", m + "kafka", false},
		{m + "emitter", m + "kafka", false},
		{arch.Module, m + "schemas", false},
		{arch.Module, m + "kafka", true},
	} {
		if got := arch.Forbidden(tc.from, tc.to) != ""; got != tc.bad {
			t.Errorf("%s → %s: forbidden %v, want %v", tc.from, tc.to, got, tc.bad)
		}
	}
}
