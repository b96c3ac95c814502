package apispec

import (
	"net/http"
	"net/url"
)

// SameOrigin says whether r came from a page of the simulator itself: by its Origin header,
// which browsers send with every POST, or, without one (curl), by Sec-Fetch-Site. The
// simulators' sandbox pages (the phone, the agent's reply box) refuse a POST from another
// site's page.
func SameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	site := r.Header.Get("Sec-Fetch-Site")
	return site == "" || site == "same-origin" || site == "none"
}
