package config

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/auth"
)

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseSigningKeys reads ZENKLAV_JWT_SIGNING_KEY: "id:secret,id:secret", current key first,
// or one bare secret (id "default"), as it was before keys had ids. An empty value is no
// keys. To rotate, put the new key first and keep the old one listed until the tokens it
// signed have expired; then drop it.
//
// A value is read as the list form when it has a comma or starts with an id and a colon; so
// a bare secret that itself looks like "word:rest" must be written "default:word:rest". A
// bare secret is taken byte for byte, so the key of an existing setup does not change.
func ParseSigningKeys(v string) ([]auth.SigningKey, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	id, _, hasID := strings.Cut(v, ":")
	if !strings.Contains(v, ",") && (!hasID || !keyIDPattern.MatchString(id)) {
		if len(v) < auth.MinSigningKeyBytes {
			return nil, fmt.Errorf("ZENKLAV_JWT_SIGNING_KEY is %d characters: use a secret of at least %d (openssl rand -hex 32)", len(v), auth.MinSigningKeyBytes)
		}
		return []auth.SigningKey{{ID: auth.DefaultKeyID, Secret: zenklav.Secret(v)}}, nil
	}
	var keys []auth.SigningKey
	seen := map[string]bool{}
	for i, item := range strings.Split(v, ",") {
		id, secret, ok := strings.Cut(strings.TrimSpace(item), ":")
		switch {
		case !ok || !keyIDPattern.MatchString(id):
			// The item is not quoted: it may be a secret.
			return nil, fmt.Errorf("ZENKLAV_JWT_SIGNING_KEY: key %d is not id:secret with an id of letters, digits, '.', '_' or '-'", i+1)
		case seen[id]:
			return nil, fmt.Errorf("ZENKLAV_JWT_SIGNING_KEY: key id %q is listed twice", id)
		case len(secret) < auth.MinSigningKeyBytes:
			return nil, fmt.Errorf("ZENKLAV_JWT_SIGNING_KEY: the secret of key %q is %d characters: use at least %d (openssl rand -hex 32)", id, len(secret), auth.MinSigningKeyBytes)
		}
		seen[id] = true
		keys = append(keys, auth.SigningKey{ID: id, Secret: zenklav.Secret(secret)})
	}
	return keys, nil
}

// SetSigningKeys makes keys zenklav's signing keys, the first the one it signs with.
func (c *Tokens) SetSigningKeys(keys []auth.SigningKey) {
	c.JWTKeys = keys
	c.JWTSigningKey = ""
	if len(keys) > 0 {
		c.JWTSigningKey = keys[0].Secret
	}
}
