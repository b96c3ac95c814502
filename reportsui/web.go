// Package reportsui is the marketers' /reports page: filters, a trend line chart, cohort
// heat-map triangles, tables and CSV downloads over zenklav's reports API. The charts are
// Apache ECharts from npm, bundled into web/charts.js (`npm run build` in reportsui/, after `make deps`) and committed, so
// `make run` serves the page with no npm and no CDN.
package reportsui

import (
	"embed"
	"io/fs"
)

// Web is the page, under "web/":
//
//   - index.html, an html/template executed with a struct or map whose Assets (string) is
//     the URL prefix where the other files are served, ending in "/";
//   - charts.js (the ECharts bundle, setting window.ZenklavCharts), reports.js and
//     reports.css, static files for Assets.
//
// The page has no inline script or style and takes its token from the URL's #token=
// fragment, so it runs under a CSP of script-src 'self', style-src 'self' and
// connect-src 'self', and its HTML holds nothing secret.
//
//go:embed web
var Web embed.FS

// Page is Web's web/ directory as the root, as backend.Options.ReportsPage takes it.
func Page() fs.FS {
	sub, err := fs.Sub(Web, "web")
	if err != nil {
		// fs.Sub fails only on an invalid directory name, and "web" is a valid one.
		panic(err)
	}
	return sub
}
