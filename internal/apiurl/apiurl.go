// Package apiurl checks the base URL an API client is given, the same way for every client.
package apiurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ParseBase parses raw as an API base URL: http(s), with a host, and without credentials, a
// query or a fragment, which would end up in error messages and logs that quote URLs.
// A trailing slash is dropped so paths can be appended.
func ParseBase(raw string) (*url.URL, error) {
	base, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return nil, fmt.Errorf("parse base url: %w", err)
	}
	if base.Scheme != "https" && base.Scheme != "http" || base.Host == "" {
		return nil, fmt.Errorf("base url %q must be an http(s) URL with a host", raw)
	}
	if base.User != nil || base.RawQuery != "" || base.Fragment != "" {
		return nil, errors.New("base url must not carry credentials, a query or a fragment")
	}
	return base, nil
}
