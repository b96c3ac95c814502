package zenklav

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ZendeskApp is a connection's installation of the zenklav sidebar app in Zendesk. Zendesk
// signs the app's signed-URL requests with RS256; the public key and the installation id are
// what Zendesk shows once the app is created (`zcli apps:create`) and installed.
type ZendeskApp struct {
	InstallationID int64 `json:"installation_id"`
	// PublicKey is the app's PEM public key ("-----BEGIN PUBLIC KEY-----…"). It is not a
	// secret, so it prints.
	PublicKey string `json:"public_key"`

	rsaKey *rsa.PublicKey
}

// RSAPublicKey returns the parsed public key: always set on an app of loaded connections.
func (a *ZendeskApp) RSAPublicKey() *rsa.PublicKey { return a.rsaKey }

// Issuer is the iss Zendesk puts in the app's JWTs: the account's host.
func (z *ZendeskSettings) Issuer() string { return z.Subdomain + ".zendesk.com" }

// AppAudience is the aud Zendesk puts in the JWTs of the app installation: its API URL.
func (z *ZendeskSettings) AppAudience() string {
	if z.App == nil {
		return ""
	}
	return fmt.Sprintf("https://%s.zendesk.com/api/v2/apps/installations/%d.json", z.Subdomain, z.App.InstallationID)
}

// minRSABits refuses keys too weak to trust a signature with; Zendesk's are 2048 bits.
const minRSABits = 2048

// validate checks the installation and parses its key; the errors name the setting.
func (a *ZendeskApp) validate() error {
	var errs []error
	if a.InstallationID <= 0 {
		errs = append(errs, errors.New("zendesk.app.installation_id must be the app installation's id (a positive number)"))
	}
	key, err := parseRSAPublicKey(a.PublicKey)
	if err != nil {
		errs = append(errs, fmt.Errorf("zendesk.app.public_key: %w", err))
	}
	a.rsaKey = key
	return errors.Join(errs...)
}

// parseRSAPublicKey reads a PEM "PUBLIC KEY" (PKIX) or "RSA PUBLIC KEY" (PKCS #1) block.
func parseRSAPublicKey(s string) (*rsa.PublicKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("is empty: paste the app's PEM public key (-----BEGIN PUBLIC KEY-----…)")
	}
	block, rest := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("is not PEM: it must start with -----BEGIN PUBLIC KEY----- and keep its line breaks")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, errors.New("holds more than one PEM block")
	}
	var key *rsa.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("does not parse: %w", err)
		}
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("is a %T key, not RSA: Zendesk signs with RS256", pub)
		}
		key = k
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("does not parse: %w", err)
		}
		key = k
	default:
		return nil, fmt.Errorf("is a PEM %q block, not a PUBLIC KEY", block.Type)
	}
	if key.N.BitLen() < minRSABits {
		return nil, fmt.Errorf("is a %d-bit RSA key; at least %d bits are needed", key.N.BitLen(), minRSABits)
	}
	return key, nil
}
