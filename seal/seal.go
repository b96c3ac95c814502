// Package seal keeps zenklav's secrets sealed at rest: AES-256-GCM under a key from
// ZENKLAV_SECRETS_KEY. Keys have ids, so a new key can seal while the old ones still open what
// they sealed (`zenklav secrets rotate` then re-seals everything under the new one). A sealed
// value names its key and is bound to where it belongs (its connection and field, the
// additional data of GCM), so it cannot be moved to another field or connection unnoticed.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/zenklav/zenklav"
)

// prefix marks a sealed value and its format's version.
const prefix = "zks1:"

// Keyring holds the keys: the first seals, every one opens.
type Keyring struct {
	ids  []string
	aead map[string]cipher.AEAD
}

var keyID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// ParseKeyring reads ZENKLAV_SECRETS_KEY: "id:base64key[,id:base64key…]", each key 32 bytes
// (AES-256) in standard or URL base64; the first seals. EINVALID says what is wrong without
// printing any key.
func ParseKeyring(s zenklav.Secret) (*Keyring, error) {
	k := &Keyring{aead: map[string]cipher.AEAD{}}
	for i, part := range strings.Split(s.Reveal(), ",") {
		id, b64, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || !keyID.MatchString(id) {
			return nil, zenklav.Errorf(zenklav.EINVALID, "ZENKLAV_SECRETS_KEY: key %d must be id:key, the id letters, digits, - or _ (zenklav secrets new-key makes one)", i+1)
		}
		raw, err := decodeKey(b64)
		if err != nil {
			return nil, zenklav.Errorf(zenklav.EINVALID, "ZENKLAV_SECRETS_KEY: key %q must be 32 bytes in base64 (zenklav secrets new-key makes one)", id)
		}
		if _, dup := k.aead[id]; dup {
			return nil, zenklav.Errorf(zenklav.EINVALID, "ZENKLAV_SECRETS_KEY: key id %q appears twice", id)
		}
		block, _ := aes.NewCipher(raw) // 32 bytes: cannot fail
		gcm, _ := cipher.NewGCM(block)
		k.ids, k.aead[id] = append(k.ids, id), gcm
	}
	return k, nil
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil && len(raw) == 32 {
			return raw, nil
		}
	}
	return nil, fmt.Errorf("not a 32-byte key")
}

// Current is the id of the key that seals.
func (k *Keyring) Current() string { return k.ids[0] }

// Seal seals s for place (the connection and field it belongs to): "zks1:KEYID:base64(nonce‖ciphertext)".
// An empty secret stays empty.
func (k *Keyring) Seal(s zenklav.Secret, place string) (string, error) {
	if s == "" {
		return "", nil
	}
	id := k.Current()
	gcm := k.aead[id]
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := gcm.Seal(nonce, nonce, []byte(s.Reveal()), []byte(place))
	return prefix + id + ":" + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open opens a value sealed for place. A value sealed under a key the ring lacks, tampered
// with, or sealed for another place is EINVALID, naming the key id only.
func (k *Keyring) Open(sealed, place string) (zenklav.Secret, error) {
	if sealed == "" {
		return "", nil
	}
	id, data, err := split(sealed)
	if err != nil {
		return "", err
	}
	gcm, ok := k.aead[id]
	if !ok {
		return "", zenklav.Errorf(zenklav.EINVALID, "%s is sealed under key %q, which ZENKLAV_SECRETS_KEY does not hold", place, id)
	}
	if len(data) < gcm.NonceSize() {
		return "", zenklav.Errorf(zenklav.EINVALID, "%s: sealed value is cut short", place)
	}
	plain, err := gcm.Open(nil, data[:gcm.NonceSize()], data[gcm.NonceSize():], []byte(place))
	if err != nil {
		return "", zenklav.Errorf(zenklav.EINVALID, "%s does not open under key %q: tampered with, or sealed for another place", place, id)
	}
	return zenklav.Secret(plain), nil
}

// keyOf is the id of the key a value is sealed under; "" when it is not a sealed value.
func keyOf(sealed string) string {
	id, _, err := split(sealed)
	if err != nil {
		return ""
	}
	return id
}

func split(sealed string) (string, []byte, error) {
	rest, ok := strings.CutPrefix(sealed, prefix)
	id, b64, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return "", nil, zenklav.Errorf(zenklav.EINVALID, "not a sealed value")
	}
	data, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return "", nil, zenklav.Errorf(zenklav.EINVALID, "sealed value is not base64")
	}
	return id, data, nil
}

// NewKey makes a fresh key, "id:base64key", its id from the date and random digits so that
// keys made on one day differ.
func NewKey(date string) (string, error) {
	raw := make([]byte, 32)
	suffix := make([]byte, 3)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	if _, err := rand.Read(suffix); err != nil {
		return "", err
	}
	return date + "-" + hex.EncodeToString(suffix) + ":" + base64.StdEncoding.EncodeToString(raw), nil
}
