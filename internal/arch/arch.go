// Package arch keeps the house rules of docs/architecture.md true: which packages may
// import which, and how long a function may grow. Its tests read the source tree; `make
// test` and `make lint` run them.
package arch

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Module is the module path the rules speak of.
const Module = "github.com/zenklav/zenklav"

// Adapters are the packages named after a technology: each implements the domain's
// interfaces for one outside system, and none imports another (cmd/zenklav joins them).
// A package below one (klaviyo/klaviyotest) belongs to it.
var Adapters = []string{"kafka", "analytics", "klaviyo", "zendesk"}

// Roles are the consumer roles: handlers on the kafka package's consumer framework. The HTTP
// adapter (backend) serves the api role and imports none of them.
var Roles = []string{"emitter", "sink"}

// MaxFunctionLines is the longest a function may be, from func to its closing brace,
// outside tests and generated code.
const MaxFunctionLines = 80

// File is a Go file of the module, parsed.
type File struct {
	Path    string // relative to the module root, with slashes
	Package string // the import path of its package
	Test    bool
	AST     *ast.File
	Fset    *token.FileSet
}

// Files parses every Go file below root (the module root), leaving out what is not the
// module's: dependencies, caches and data.
func Files(root string) ([]File, error) {
	var out []File
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		pkg := Module
		if dir := filepath.ToSlash(filepath.Dir(rel)); dir != "." {
			pkg += "/" + dir
		}
		out = append(out, File{Path: rel, Package: pkg, Test: strings.HasSuffix(rel, "_test.go"), AST: f, Fset: fset})
		return nil
	})
	return out, err
}

// Imports returns the module's packages a file imports.
func (f File) Imports() []string {
	var out []string
	for _, imp := range f.AST.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err == nil && (p == Module || strings.HasPrefix(p, Module+"/")) {
			out = append(out, p)
		}
	}
	return out
}

// Generated reports whether the file says it is generated (go generate's convention).
func (f File) Generated() bool { return ast.IsGenerated(f.AST) }

// Root finds the module root from the working directory of a test.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// Within reports whether package pkg is name's package or one below it.
func Within(pkg, name string) bool {
	p := Module + "/" + name
	return pkg == p || strings.HasPrefix(pkg, p+"/")
}

// Forbidden says why package from may not import package to, or "" when it may.
func Forbidden(from, to string) string {
	switch {
	case from == Module && to != Module+"/schemas":
		return "the domain imports nothing of zenklav but the wire contracts (schemas)"
	case Within(to, "config") && !Within(from, "cmd"):
		return "only cmd/zenklav reads the configuration; pass what it read as domain types"
	case Within(from, "backend") && slicesContains(Roles, func(r string) bool { return Within(to, r) }):
		return "the HTTP adapter serves the api role and runs no consumer role"
	}
	for _, a := range Adapters {
		if !Within(from, a) {
			continue
		}
		for _, b := range Adapters {
			if b != a && Within(to, b) {
				return "adapters never import each other: cmd/zenklav wires them through the domain's interfaces"
			}
		}
	}
	return ""
}

func slicesContains(s []string, f func(string) bool) bool {
	for _, x := range s {
		if f(x) {
			return true
		}
	}
	return false
}
