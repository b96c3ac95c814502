package backend

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"

	"github.com/gin-gonic/gin"
	"github.com/zenklav/zenklav"
)

// webFiles are a page's scripts and styles (the files of its directory but the .html
// templates), served under a version of all its files: a new release changes the URLs, so
// the files may be cached for good.
type webFiles struct {
	version string
	files   map[string][]byte
}

func loadWebFiles(web fs.FS) (webFiles, error) {
	w := webFiles{files: map[string][]byte{}}
	names, err := fs.Glob(web, "*")
	if err != nil {
		return webFiles{}, err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, name := range names {
		b, err := fs.ReadFile(web, name)
		if err != nil {
			continue // a directory
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
		if path.Ext(name) != ".html" {
			w.files[name] = b
		}
	}
	w.version = hex.EncodeToString(h.Sum(nil))[:12]
	return w, nil
}

// prefix is the files' URL prefix under mount (e.g. "/app/web"): what the templates call
// .Assets.
func (w webFiles) prefix(mount string) string { return mount + "/" + w.version + "/" }

// serve answers GET {mount}/:version/:file, cached for a year; another version is not found.
func (w webFiles) serve(c *gin.Context) {
	b, ok := w.files[c.Param("file")]
	if !ok || c.Param("version") != w.version {
		_ = c.Error(zenklav.Errorf(zenklav.ENOTFOUND, "no file %s", c.Request.URL.Path))
		return
	}
	ctype := mime.TypeByExtension(path.Ext(c.Param("file")))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	c.Header("Cache-Control", "public, max-age=31536000, immutable")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Data(http.StatusOK, ctype, b)
}
