package auth

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/zenklav/zenklav"
)

// The tokens zenklav signs itself (sidebar sessions, report tokens) share their form: HS256
// with the current key of ZENKLAV_JWT_SIGNING_KEY named in the header's kid, issuer
// "zenklav", an audience per kind so that no kind passes as another, exp and nbf required.

const zenklavIssuer = "zenklav"

const (
	// leeway absorbs clock skew between Zendesk, zenklav and the agent's browser.
	leeway = 5 * time.Second
	// maxTokenBytes bounds what is parsed at all.
	maxTokenBytes = 8 << 10
)

var errUnknownKey = errors.New("unknown key id")

// signZenklavToken signs claims with key, naming it in the kid.
func signZenklavToken(key SigningKey, claims jwt.Claims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	t.Header["kid"] = key.ID
	return t.SignedString([]byte(key.Secret.Reveal()))
}

// parseZenklavToken verifies a token of the given audience into claims with whichever of keys
// its kid names, and returns that kid. A token without a kid is verified with keys[0] when
// noKid says so (tokens signed before keys had ids), and is otherwise errUnknownKey.
func parseZenklavToken(token, audience string, keys []SigningKey, noKid bool, leeway time.Duration, now func() time.Time, claims jwt.Claims) (string, error) {
	var kid string
	_, err := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(zenklavIssuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithNotBeforeRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	).ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ = t.Header["kid"].(string)
		if kid == "" && noKid {
			return []byte(keys[0].Secret.Reveal()), nil
		}
		for _, k := range keys {
			if k.ID == kid {
				return []byte(k.Secret.Reveal()), nil
			}
		}
		return nil, errUnknownKey
	})
	return kid, err
}

// refusal turns a jwt error into EUNAUTHORIZED with a message that says what was wrong
// without echoing the token.
func refusal(what string, err error) error {
	msg := "invalid " + what
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		msg = "malformed " + what
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		msg = what + " is not signed with the expected key and algorithm"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		msg = what + " lacks a required claim"
	case errors.Is(err, jwt.ErrTokenExpired):
		msg = what + " has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		msg = what + " is not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		msg = what + " has the wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		msg = what + " is for another audience"
	}
	return zenklav.Wrap(zenklav.EUNAUTHORIZED, err, "%s", msg)
}

// trimKid bounds a value from an unverified token before it goes into a message.
func trimKid(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
