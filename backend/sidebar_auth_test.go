package backend_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/zenklav/zenklav"
	zauth "github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/config"
)

const (
	signingKey = zenklav.Secret("zenklav-test-signing-key-0123456789abcdef")
	acmeAud    = "https://acme.zendesk.com/api/v2/apps/installations/101.json"
	globexAud  = "https://globex.zendesk.com/api/v2/apps/installations/202.json"
)

// testKeys are the RSA keys of the tests, generated once per test binary.
var testKeys = sync.OnceValue(func() map[string]*rsa.PrivateKey {
	keys := map[string]*rsa.PrivateKey{}
	for _, name := range []string{"acme", "globex", "stranger"} {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[name] = k
	}
	return keys
})

func publicPEM(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// sidebarConns are two tenants, each with its app installation.
func sidebarConns(t *testing.T, acmeInstallation int64) *zenklav.Connections {
	t.Helper()
	doc, err := json.Marshal(map[string]any{"connections": []any{
		map[string]any{"id": "acme", "zendesk": map[string]any{
			"subdomain": "acme", "webhook_secrets": []string{secret}, "brands": "all",
			"app": map[string]any{"installation_id": acmeInstallation, "public_key": publicPEM(t, testKeys()["acme"])},
		}},
		map[string]any{"id": "globex", "zendesk": map[string]any{
			"subdomain": "globex", "webhook_secrets": []string{secret}, "brands": "all",
			"app": map[string]any{"installation_id": 202, "public_key": publicPEM(t, testKeys()["globex"])},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	conns, err := config.ParseConnections(doc)
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

func sidebarAuth(t *testing.T, key zenklav.Secret, clock time.Time) *zauth.Sidebar {
	t.Helper()
	a, err := zauth.NewSidebar(sidebarConns(t, 101), []zauth.SigningKey{{ID: "k1", Secret: key}}, func() time.Time { return clock })
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// zafClaims are the claims of a good Zendesk app token for acme, issued a second ago.
func zafClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss":     "acme.zendesk.com",
		"aud":     acmeAud,
		"iat":     now.Add(-time.Second).Unix(),
		"exp":     now.Add(5 * time.Minute).Unix(),
		"context": map[string]any{"product": "support", "location": "ticket_sidebar"},
		"user":    map[string]any{"id": 9001, "email": "agent@acme.test"},
		"ticket":  map[string]any{"id": "5158"},
	}
}

func signRS(t *testing.T, method jwt.SigningMethod, key *rsa.PrivateKey, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func with(change func(jwt.MapClaims)) jwt.MapClaims {
	c := zafClaims()
	change(c)
	return c
}

func TestVerifyAppToken(t *testing.T) {
	keys := testKeys()
	auth := sidebarAuth(t, signingKey, now)
	acme := func(c jwt.MapClaims) string { return signRS(t, jwt.SigningMethodRS256, keys["acme"], c) }
	valid := acme(zafClaims())
	parts := strings.Split(valid, ".")
	b64 := base64.RawURLEncoding.EncodeToString

	hsWith := func(key []byte) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, zafClaims()).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pubPEM := []byte(publicPEM(t, keys["acme"]))
	pubDER, _ := x509.MarshalPKIXPublicKey(&keys["acme"].PublicKey)
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, zafClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	tampered := func() string {
		payload, _ := json.Marshal(with(func(c jwt.MapClaims) { c["user"] = map[string]any{"id": 1, "email": "admin@acme.test"} }))
		return parts[0] + "." + b64(payload) + "." + parts[2]
	}()

	for _, tc := range []struct {
		name, token, tenant, code string
	}{
		{"valid", valid, "", ""},
		{"valid without agent or ticket", acme(with(func(c jwt.MapClaims) { delete(c, "user"); delete(c, "ticket") })), "", ""},
		{"expired within the leeway", acme(with(func(c jwt.MapClaims) { c["exp"] = now.Add(-3 * time.Second).Unix() })), "", ""},
		{"aud as a list", acme(with(func(c jwt.MapClaims) { c["aud"] = []string{acmeAud} })), "", ""},

		{"expired", acme(with(func(c jwt.MapClaims) {
			c["exp"] = now.Add(-time.Minute).Unix()
			c["iat"] = now.Add(-6 * time.Minute).Unix()
		})), "", zenklav.EUNAUTHORIZED},
		{"no exp", acme(with(func(c jwt.MapClaims) { delete(c, "exp") })), "", zenklav.EUNAUTHORIZED},
		{"not yet valid", acme(with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), "", zenklav.EUNAUTHORIZED},
		{"issued in the future", acme(with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() })), "", zenklav.EUNAUTHORIZED},
		{"no iat", acme(with(func(c jwt.MapClaims) { delete(c, "iat") })), "", zenklav.EUNAUTHORIZED},
		{"issued hours ago", acme(with(func(c jwt.MapClaims) { c["iat"] = now.Add(-3 * time.Hour).Unix() })), "", zenklav.EUNAUTHORIZED},
		{"wrong audience: unknown installation", acme(with(func(c jwt.MapClaims) { c["aud"] = strings.Replace(acmeAud, "101", "999", 1) })), "", zenklav.EUNAUTHORIZED},
		{"wrong audience: not an installation URL", acme(with(func(c jwt.MapClaims) { c["aud"] = "https://acme.zendesk.com" })), "", zenklav.EUNAUTHORIZED},
		{"wrong audience: another account's installation", acme(with(func(c jwt.MapClaims) { c["aud"] = globexAud })), "", zenklav.EUNAUTHORIZED},
		{"no audience", acme(with(func(c jwt.MapClaims) { delete(c, "aud") })), "", zenklav.EUNAUTHORIZED},
		{"wrong issuer", acme(with(func(c jwt.MapClaims) { c["iss"] = "evil.zendesk.com" })), "", zenklav.EUNAUTHORIZED},
		{"issuer that only starts right", acme(with(func(c jwt.MapClaims) { c["iss"] = "acme.zendesk.com.evil.test" })), "", zenklav.EUNAUTHORIZED},
		{"no issuer", acme(with(func(c jwt.MapClaims) { delete(c, "iss") })), "", zenklav.EUNAUTHORIZED},
		{"signed by another key", signRS(t, jwt.SigningMethodRS256, keys["stranger"], zafClaims()), "", zenklav.EUNAUTHORIZED},
		{"alg none", none, "", zenklav.EUNAUTHORIZED},
		{"alg none, signature kept", none + parts[2], "", zenklav.EUNAUTHORIZED},
		{"HS256 keyed with the public key PEM", hsWith(pubPEM), "", zenklav.EUNAUTHORIZED},
		{"HS256 keyed with the public key DER", hsWith(pubDER), "", zenklav.EUNAUTHORIZED},
		{"RS512 with the right key", signRS(t, jwt.SigningMethodRS512, keys["acme"], zafClaims()), "", zenklav.EUNAUTHORIZED},
		{"PS256 with the right key", signRS(t, jwt.SigningMethodPS256, keys["acme"], zafClaims()), "", zenklav.EUNAUTHORIZED},
		{"tampered payload", tampered, "", zenklav.EUNAUTHORIZED},
		{"tampered header", b64([]byte(`{"alg":"RS256","typ":"JWT","kid":"x"}`)) + "." + parts[1] + "." + parts[2], "", zenklav.EUNAUTHORIZED},
		{"another tenant's token", signRS(t, jwt.SigningMethodRS256, keys["globex"], with(func(c jwt.MapClaims) { c["iss"] = "globex.zendesk.com"; c["aud"] = globexAud })), "acme", zenklav.EFORBIDDEN},
		{"another tenant's key claiming this installation", signRS(t, jwt.SigningMethodRS256, keys["globex"], zafClaims()), "", zenklav.EUNAUTHORIZED},
		{"missing token", "", "", zenklav.EUNAUTHORIZED},
		{"not a JWT", "hello", "", zenklav.EUNAUTHORIZED},
		{"garbage segments", "a.b.c", "", zenklav.EUNAUTHORIZED},
		{"huge token", strings.Repeat("a", 9<<10), "", zenklav.EUNAUTHORIZED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := auth.VerifyAppToken(tc.token)
			if err == nil && tc.tenant != "" {
				err = id.Authorize(tc.tenant)
			}
			if got := zenklav.ErrorCode(err); got != tc.code {
				t.Fatalf("error kind = %q (%v), want %q", got, err, tc.code)
			}
			if tc.code != "" {
				t.Logf("refused: %v", err)
				if tc.code == zenklav.EUNAUTHORIZED && id != (zauth.AppIdentity{}) {
					t.Errorf("refused token still gave an identity: %+v", id)
				}
				if strings.Contains(zenklav.ErrorMessage(err), tc.token) && tc.token != "" {
					t.Errorf("message echoes the token: %v", err)
				}
				return
			}
			if id.Connection != "acme" || id.Subdomain != "acme" || id.Installation != 101 {
				t.Errorf("identity = %+v", id)
			}
		})
	}

	id, err := auth.VerifyAppToken(valid)
	if err != nil {
		t.Fatal(err)
	}
	want := zauth.AppIdentity{Connection: "acme", Subdomain: "acme", Installation: 101, UserID: 9001, Email: "agent@acme.test", TicketID: 5158}
	if id != want {
		t.Errorf("identity = %+v, want %+v", id, want)
	}
	gid, err := auth.VerifyAppToken(signRS(t, jwt.SigningMethodRS256, keys["globex"], with(func(c jwt.MapClaims) { c["iss"] = "globex.zendesk.com"; c["aud"] = globexAud })))
	if err != nil || gid.Connection != "globex" || gid.Installation != 202 {
		t.Errorf("globex's own token = %+v, %v", gid, err)
	}
}

func TestNewSidebarAuth(t *testing.T) {
	if _, err := zauth.NewSidebar(sidebarConns(t, 101), []zauth.SigningKey{{ID: "k1", Secret: "short"}}, nil); err == nil {
		t.Error("a 5-character signing key was accepted")
	}
	if _, err := zauth.NewSidebar(sidebarConns(t, 101), nil, nil); err == nil {
		t.Error("no keys accepted")
	}
	if _, err := zauth.NewSidebar(nil, []zauth.SigningKey{{ID: "k1", Secret: signingKey}}, nil); err == nil {
		t.Error("no connections accepted")
	}
}

func TestSessionToken(t *testing.T) {
	keys := testKeys()
	auth := sidebarAuth(t, signingKey, now)
	id := zauth.AppIdentity{Connection: "acme", Subdomain: "acme", Installation: 101, UserID: 9001, Email: "agent@acme.test", TicketID: 5158}
	token, s, err := auth.IssueSession(id)
	if err != nil {
		t.Fatal(err)
	}
	if s.AppIdentity != id || !s.ExpiresAt.Equal(now.Add(15*time.Minute)) || len(s.ID) != 32 {
		t.Errorf("session = %+v", s)
	}
	_, s2, _ := auth.IssueSession(id)
	if s2.ID == s.ID {
		t.Error("two sessions share a jti")
	}
	got, err := auth.VerifySession(token)
	if err != nil || got != s {
		t.Fatalf("VerifySession = %+v, %v; want %+v", got, err, s)
	}

	globexToken, _, err := auth.IssueSession(zauth.AppIdentity{Connection: "globex", Subdomain: "globex", Installation: 202})
	if err != nil {
		t.Fatal(err)
	}
	zafToken := signRS(t, jwt.SigningMethodRS256, keys["acme"], zafClaims())
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": "zenklav", "aud": "zenklav:sidebar", "iat": now.Unix(), "nbf": now.Unix(),
			"exp": now.Add(time.Minute).Unix(), "jti": "abc", "tenant": "acme", "subdomain": "acme", "installation": 101,
			"auth_time": now.Unix(),
		}
		change(c)
		return c
	}
	hs := func(key zenklav.Secret, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(func(jwt.MapClaims) {})).SignedString(jwt.UnsafeAllowNoneSignatureType)

	for _, tc := range []struct {
		name  string
		auth  *zauth.Sidebar
		token string
		code  string
	}{
		{"valid", auth, token, ""},
		{"hand-made with the right key", auth, hs(signingKey, claims(func(jwt.MapClaims) {})), ""},
		{"just before expiry, within the leeway", sidebarAuth(t, signingKey, now.Add(15*time.Minute+3*time.Second)), token, ""},
		{"expired", sidebarAuth(t, signingKey, now.Add(16*time.Minute)), token, zenklav.EUNAUTHORIZED},
		{"not yet valid", sidebarAuth(t, signingKey, now.Add(-time.Minute)), token, zenklav.EUNAUTHORIZED},
		{"wrong key", sidebarAuth(t, signingKey+"-other", now), token, zenklav.EUNAUTHORIZED},
		{"no exp", auth, hs(signingKey, claims(func(c jwt.MapClaims) { delete(c, "exp") })), zenklav.EUNAUTHORIZED},
		{"no nbf", auth, hs(signingKey, claims(func(c jwt.MapClaims) { delete(c, "nbf") })), zenklav.EUNAUTHORIZED},
		{"another audience", auth, hs(signingKey, claims(func(c jwt.MapClaims) { c["aud"] = "zenklav:reports" })), zenklav.EUNAUTHORIZED},
		{"another issuer", auth, hs(signingKey, claims(func(c jwt.MapClaims) { c["iss"] = "acme.zendesk.com" })), zenklav.EUNAUTHORIZED},
		{"no tenant", auth, hs(signingKey, claims(func(c jwt.MapClaims) { delete(c, "tenant") })), zenklav.EUNAUTHORIZED},
		{"no auth_time", auth, hs(signingKey, claims(func(c jwt.MapClaims) { delete(c, "auth_time") })), zenklav.EUNAUTHORIZED},
		{"tenant not owning the installation", auth, hs(signingKey, claims(func(c jwt.MapClaims) { c["tenant"] = "globex" })), zenklav.EFORBIDDEN},
		{"installation moved to another id", sidebarAuthWith(t, sidebarConns(t, 102)), token, zenklav.EFORBIDDEN},
		{"alg none", auth, none, zenklav.EUNAUTHORIZED},
		{"Zendesk's app token as a session", auth, zafToken, zenklav.EUNAUTHORIZED},
		{"missing", auth, "", zenklav.EUNAUTHORIZED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.auth.VerifySession(tc.token)
			if got := zenklav.ErrorCode(err); got != tc.code {
				t.Fatalf("error kind = %q (%v), want %q", got, err, tc.code)
			}
			if tc.code != "" && s != (zauth.Session{}) {
				t.Errorf("refused token still gave a session: %+v", s)
			}
		})
	}

	// A session is not a Zendesk app token either.
	if _, err := auth.VerifyAppToken(token); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
		t.Errorf("session accepted as an app token: %v", err)
	}

	t.Run("middleware", func(t *testing.T) {
		gin.SetMode(gin.ReleaseMode)
		e := gin.New()
		var refused string
		e.Use(func(c *gin.Context) { // stands in for the server's error renderer
			c.Next()
			if len(c.Errors) > 0 && !c.Writer.Written() {
				refused = zenklav.ErrorCode(c.Errors[0].Err)
				c.AbortWithStatus(map[string]int{zenklav.EUNAUTHORIZED: 401, zenklav.EFORBIDDEN: 403}[refused])
			}
		})
		data := func(c *gin.Context) {
			s, ok := backend.SessionFrom(c)
			if !ok {
				t.Error("handler ran without a session")
			}
			c.JSON(http.StatusOK, gin.H{"tenant": s.Connection, "ticket": s.TicketID})
		}
		e.GET("/profile", backend.RequireSession(auth, false), data)
		e.GET("/tenants/:tenant/profile", backend.RequireSession(auth, false), data)
		for _, tc := range []struct{ name, path, header, code, body string }{
			{"valid", "/profile", "Bearer " + token, "", `{"tenant":"acme","ticket":5158}`},
			{"lowercase scheme", "/profile", "bearer " + token, "", `{"tenant":"acme","ticket":5158}`},
			{"own tenant in the path", "/tenants/acme/profile", "Bearer " + token, "", `{"tenant":"acme","ticket":5158}`},
			{"another tenant's session", "/tenants/acme/profile", "Bearer " + globexToken, zenklav.EFORBIDDEN, ""},
			{"expired", "/profile", "Bearer " + hs(signingKey, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), zenklav.EUNAUTHORIZED, ""},
			{"wrong key", "/profile", "Bearer " + hs("another-signing-key-0123456789abcdef", claims(func(jwt.MapClaims) {})), zenklav.EUNAUTHORIZED, ""},
			{"Zendesk's token", "/profile", "Bearer " + zafToken, zenklav.EUNAUTHORIZED, ""},
			{"missing", "/profile", "", zenklav.EUNAUTHORIZED, ""},
			{"empty bearer", "/profile", "Bearer ", zenklav.EUNAUTHORIZED, ""},
			{"basic", "/profile", "Basic YTpi", zenklav.EUNAUTHORIZED, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				refused = ""
				req := httptest.NewRequest(http.MethodGet, tc.path, nil)
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, req)
				if refused != tc.code {
					t.Fatalf("refused with %q, want %q (status %d)", refused, tc.code, rec.Code)
				}
				if tc.code != "" {
					if rec.Body.Len() != 0 {
						t.Errorf("refused request got data: %s", rec.Body)
					}
					return
				}
				if rec.Code != http.StatusOK || rec.Body.String() != tc.body {
					t.Errorf("%d %s, want 200 %s", rec.Code, rec.Body, tc.body)
				}
			})
		}
	})
}

func sidebarAuthWith(t *testing.T, conns *zenklav.Connections) *zauth.Sidebar {
	t.Helper()
	a, err := zauth.NewSidebar(conns, []zauth.SigningKey{{ID: "k1", Secret: signingKey}}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSessionSurvivesKeyRotation: a session signed with the key that was current keeps
// working once a new key is put first, and stops when the old key is dropped.
func TestSessionSurvivesKeyRotation(t *testing.T) {
	oldKey := zauth.SigningKey{ID: "2026-10", Secret: "old-sidebar-signing-key-0123456789abcdef"}
	newKey := zauth.SigningKey{ID: "2026-11", Secret: "new-sidebar-signing-key-0123456789abcdef"}
	conns := sidebarConns(t, 101)
	clock := func() time.Time { return now }
	before, err := zauth.NewSidebar(conns, []zauth.SigningKey{oldKey}, clock)
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := before.IssueSession(zauth.AppIdentity{Connection: "acme", Subdomain: "acme", Installation: 101})
	if err != nil {
		t.Fatal(err)
	}
	during, _ := zauth.NewSidebar(conns, []zauth.SigningKey{newKey, oldKey}, clock)
	if _, err := during.VerifySession(token); err != nil {
		t.Errorf("a session of the previous key during the rotation: %v", err)
	}
	after, _ := zauth.NewSidebar(conns, []zauth.SigningKey{newKey}, clock)
	if _, err := after.VerifySession(token); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
		t.Errorf("a session of a dropped key: %v, want unauthorized", err)
	}
}
