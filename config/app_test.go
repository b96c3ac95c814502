package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/zenklav/zenklav/config"
)

func pemOf(t *testing.T, typ string, der []byte) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func rsaPublicPEM(t *testing.T, bits int) (string, *rsa.PrivateKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PUBLIC KEY", der), k
}

// appDoc is a connections document whose one connection has the given app object.
func appDoc(app string) string {
	return `{"connections":[{"id":"acme","zendesk":{"subdomain":"acme","webhook_secrets":["0123456789abcdef"],"brands":"all","app":` + app + `}}]}`
}

func appJSON(t *testing.T, id int64, key, secret string) string {
	t.Helper()
	app := map[string]any{"installation_id": id, "public_key": key}
	if secret != "" {
		app["shared_secret"] = secret
	}
	b, err := json.Marshal(app)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestZendeskApp(t *testing.T) {
	c, err := config.LoadConnections("testdata/connections.yaml")
	if err != nil {
		t.Fatal(err)
	}
	acme := c.ByAppInstallation("acme", 360000123)
	if acme == nil || acme.ID != "acme" || acme.Zendesk.App.RSAPublicKey() == nil {
		t.Fatalf("installation 360000123 = %+v", acme)
	}
	if got, want := acme.Zendesk.AppAudience(), "https://acme.zendesk.com/api/v2/apps/installations/360000123.json"; got != want {
		t.Errorf("audience = %q, want %q", got, want)
	}
	if got := acme.Zendesk.Issuer(); got != "acme.zendesk.com" {
		t.Errorf("issuer = %q", got)
	}
	for _, miss := range []struct {
		sub string
		id  int64
	}{{"acme", 1}, {"globex", 360000123}} {
		if c.ByAppInstallation(miss.sub, miss.id) != nil {
			t.Errorf("%s/%d found", miss.sub, miss.id)
		}
	}
	if g := c.BySubdomain("globex")[0]; g.Zendesk.App != nil || g.Zendesk.AppAudience() != "" {
		t.Errorf("globex has an app: %+v", g.Zendesk.App)
	}

	// A PKCS #1 "RSA PUBLIC KEY" block is accepted too.
	_, k := rsaPublicPEM(t, 2048)
	pkcs1 := pemOf(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.PublicKey))
	c, err = config.ParseConnections([]byte(appDoc(appJSON(t, 7, pkcs1, ""))))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ByAppInstallation("acme", 7).Zendesk.App.RSAPublicKey(); !got.Equal(&k.PublicKey) {
		t.Error("PKCS #1 key not the one given")
	}
}

func TestZendeskAppRejects(t *testing.T) {
	const secret = "app-shared-secret-0123456789"
	good, key := rsaPublicPEM(t, 2048)
	weak, _ := rsaPublicPEM(t, 1024)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	private := pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	for _, tc := range []struct{ name, doc, want string }{
		{"no installation", appDoc(appJSON(t, 0, good, "")), "zendesk.app.installation_id must be"},
		{"no key", appDoc(appJSON(t, 1, "", "")), "zendesk.app.public_key: is empty"},
		{"not PEM", appDoc(appJSON(t, 1, "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", "")), "zendesk.app.public_key: is not PEM"},
		{"lost line breaks", appDoc(appJSON(t, 1, strings.ReplaceAll(good, "\n", " "), "")), "zendesk.app.public_key: is not PEM"},
		{"garbled", appDoc(appJSON(t, 1, strings.Replace(good, "MII", "MXX", 1), "")), "zendesk.app.public_key: does not parse"},
		{"EC key", appDoc(appJSON(t, 1, pemOf(t, "PUBLIC KEY", ecDER), "")), "not RSA"},
		{"private key", appDoc(appJSON(t, 1, private, "")), `"RSA PRIVATE KEY" block`},
		{"two blocks", appDoc(appJSON(t, 1, good+good, "")), "more than one PEM block"},
		{"weak key", appDoc(appJSON(t, 1, weak, "")), "1024-bit"},
		// The page authenticates with zenklav's session; client.request JWTs are not taken.
		{"shared secret", appDoc(appJSON(t, 1, good, secret)), `unknown field "shared_secret"`},
		{"unknown key", appDoc(`{"installation_id":1,"public_key":"x","secret":"y"}`), "unknown field"},
		{"installation twice", `{"connections":[` +
			`{"id":"acme-us","zendesk":{"subdomain":"acme","webhook_secrets":["0123456789abcdef"],"brands":[1],"app":` + appJSON(t, 5, good, "") + `}},` +
			`{"id":"acme-eu","zendesk":{"subdomain":"acme","webhook_secrets":["0123456789abcdef"],"brands":[2],"app":` + appJSON(t, 5, good, "") + `}}]}`,
			`connections[1] ("acme-eu"): zendesk.app.installation_id 5 is also "acme-us"'s`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.ParseConnections([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one saying %q", err, tc.want)
			}
			if tc.name != "installation twice" && tc.name != "unknown key" && tc.name != "shared secret" && !strings.Contains(err.Error(), `connections[0] ("acme")`) {
				t.Errorf("error does not name the connection: %v", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the shared secret: %v", err)
			}
		})
	}
}
