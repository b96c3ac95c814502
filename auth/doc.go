// Package auth is who may do what: the tokens zenklav signs itself (sidebar sessions and
// report tokens, HS256 with key ids so keys rotate), and the Zendesk app tokens it verifies
// (RS256 with each installation's public key). It knows nothing of HTTP: backend's
// middleware reads the tokens from requests, and `zenklav token` issues report tokens.
package auth
