package backend

import (
	"errors"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/zenklav/zenklav/config"
)

// The tokens zenklav signs itself (sidebar sessions, report tokens) share their form: HS256
// with the current key of ZENKLAV_JWT_SIGNING_KEY named in the header's kid, issuer
// "zenklav", an audience per kind so that no kind passes as another, exp and nbf required.

const zenklavIssuer = "zenklav"

var errUnknownKey = errors.New("unknown key id")

// signZenklavToken signs claims with key, naming it in the kid.
func signZenklavToken(key config.SigningKey, claims jwt.Claims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	t.Header["kid"] = key.ID
	return t.SignedString([]byte(key.Secret.Reveal()))
}

// parseZenklavToken verifies a token of the given audience into claims with whichever of keys
// its kid names, and returns that kid. A token without a kid is verified with keys[0] when
// noKid says so (tokens signed before keys had ids), and is otherwise errUnknownKey.
func parseZenklavToken(token, audience string, keys []config.SigningKey, noKid bool, leeway time.Duration, now func() time.Time, claims jwt.Claims) (string, error) {
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

// bearerToken is the token of the request's "Authorization: Bearer …", or "".
func bearerToken(c *gin.Context) string {
	scheme, token, _ := strings.Cut(c.GetHeader("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
