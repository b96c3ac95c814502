package seal

import (
	"strings"
	"testing"

	"github.com/zenklav/zenklav"
)

func TestSealOpen(t *testing.T) {
	k1, err := NewKey("20261205")
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := NewKey("20261206")
	old, err := ParseKeyring(zenklav.Secret(k1))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := old.Seal("pk_live_secret_value", "acme/klaviyo.private_key")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "pk_live") || keyOf(sealed) != old.Current() {
		t.Fatalf("sealed value %q shows the secret or not its key", sealed)
	}
	if got, err := old.Open(sealed, "acme/klaviyo.private_key"); err != nil || got != "pk_live_secret_value" {
		t.Fatalf("Open = %v, %v", got, err)
	}
	// After a rotation the new key seals and the old still opens.
	rotated, err := ParseKeyring(zenklav.Secret(k2 + "," + k1))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Open(sealed, "acme/klaviyo.private_key"); err != nil || got != "pk_live_secret_value" {
		t.Errorf("open after rotation = %v, %v", got, err)
	}
	if again, _ := rotated.Seal("x", "p"); keyOf(again) != rotated.Current() || rotated.Current() == old.Current() {
		t.Errorf("after rotation the new key must seal: %q", again)
	}
	// Refused: another place, a tampered value, a key the ring lacks.
	newOnly, _ := ParseKeyring(zenklav.Secret(k2))
	tampered := sealed[:len(sealed)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(sealed, "AA")]
	for name, open := range map[string]func() (zenklav.Secret, error){
		"another field":      func() (zenklav.Secret, error) { return old.Open(sealed, "acme/zendesk.api_token") },
		"another connection": func() (zenklav.Secret, error) { return old.Open(sealed, "initech/klaviyo.private_key") },
		"tampered":           func() (zenklav.Secret, error) { return old.Open(tampered, "acme/klaviyo.private_key") },
		"a wrong key":        func() (zenklav.Secret, error) { return newOnly.Open(sealed, "acme/klaviyo.private_key") },
		"not sealed":         func() (zenklav.Secret, error) { return old.Open("pk_live_secret_value", "acme/klaviyo.private_key") },
	} {
		got, err := open()
		if err == nil || got != "" || zenklav.ErrorCode(err) != zenklav.EINVALID || strings.Contains(err.Error(), "pk_live") {
			t.Errorf("%s: Open = %q, %v; want an EINVALID that shows no secret", name, got, err)
		}
	}
}

func TestParseKeyringRefuses(t *testing.T) {
	good, _ := NewKey("k")
	for _, s := range []string{"", "nokey", "id:short", "bad id:" + strings.SplitN(good, ":", 2)[1], good + "," + good} {
		if _, err := ParseKeyring(zenklav.Secret(s)); err == nil || strings.Contains(err.Error(), strings.SplitN(good, ":", 2)[1]) {
			t.Errorf("ParseKeyring(%q) = %v; want an error that shows no key", s, err)
		}
	}
}
