// Package adminui is the operators' /admin pages: the setup wizard, the connections and
// each one's health. They are server-rendered HTML forms with one stylesheet, in the look of
// /reports, and no script at all: they run under a CSP that allows nothing but zenklav's own
// stylesheet, and every change is a POST carrying the session's CSRF token.
package adminui

import (
	"embed"
	"io/fs"
)

// Web holds the templates (*.html, executed by backend's admin with the page's data) and
// admin.css.
//
//go:embed web
var Web embed.FS

// Pages is Web's web/ directory as the root, as backend.Admin takes it.
func Pages() fs.FS {
	sub, err := fs.Sub(Web, "web")
	if err != nil {
		panic(err) // fs.Sub fails only on an invalid name, and "web" is valid
	}
	return sub
}
