package auth

import (
	"errors"
	"fmt"

	"github.com/zenklav/zenklav"
)

// SigningKey is one key of ZENKLAV_JWT_SIGNING_KEY: its id, which tokens name in their
// header (kid), and its HS256 secret.
type SigningKey struct {
	ID     string
	Secret zenklav.Secret
}

// DefaultKeyID is the id of a key given as a bare secret, without an id.
const DefaultKeyID = "default"

// MinSigningKeyBytes is the least secret HS256 is given (RFC 7518 §3.2: at least the hash size).
const MinSigningKeyBytes = 32

// checkKeys refuses no keys, and a key too short to sign with; what names the tokens.
func checkKeys(keys []SigningKey, what string) error {
	if len(keys) == 0 {
		return errors.New(what + " need ZENKLAV_JWT_SIGNING_KEY")
	}
	for _, k := range keys {
		if len(k.Secret) < MinSigningKeyBytes {
			return fmt.Errorf("key %q of ZENKLAV_JWT_SIGNING_KEY is shorter than %d characters", k.ID, MinSigningKeyBytes)
		}
	}
	return nil
}
