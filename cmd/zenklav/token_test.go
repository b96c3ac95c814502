package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/config"
)

const (
	tokenKeyNew = "token-test-key-new-0123456789abcdef"
	tokenKeyOld = "token-test-key-old-0123456789abcdef"
)

// runToken runs `zenklav token args…` with env and returns its two lines.
func runToken(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"token"}, args...), func(k string) string { return env[k] }, &out)
	token, url, _ := strings.Cut(strings.TrimSuffix(out.String(), "\n"), "\n")
	return token, url, err
}

func TestTokenCommand(t *testing.T) {
	env := map[string]string{
		"ZENKLAV_JWT_SIGNING_KEY":  "2026-11:" + tokenKeyNew + ",2026-10:" + tokenKeyOld,
		"ZENKLAV_CONNECTIONS_FILE": "../../config/testdata/connections.yaml",
		"ZENKLAV_HTTP_ADDR":        "0.0.0.0:8080",
		"USER":                     "ops",
	}
	token, url, err := runToken(t, env, "--role", "marketer", "--tenant", "acme", "--tenant", "globex-eu", "--ttl", "7d")
	if err != nil {
		t.Fatal(err)
	}
	if url != "http://localhost:8080/reports#token="+token {
		t.Errorf("second line %q, want the /reports URL with the token", url)
	}
	conns, err := config.LoadConnections(env["ZENKLAV_CONNECTIONS_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	verify := func(keys ...auth.SigningKey) (auth.Caller, error) {
		a, err := auth.NewReports(keys, conns, nil)
		if err != nil {
			t.Fatal(err)
		}
		return a.Verify(token)
	}
	// The first key signs; a server that has not yet been given it refuses the token.
	caller, err := verify(auth.SigningKey{ID: "2026-11", Secret: tokenKeyNew})
	if err != nil {
		t.Fatal(err)
	}
	if caller.Subject != "ops" || caller.Role != "marketer" || strings.Join(caller.Connections, ",") != "acme,globex-eu" || caller.KeyID != "2026-11" {
		t.Errorf("caller %+v", caller)
	}
	if d := time.Until(caller.ExpiresAt); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour {
		t.Errorf("expires in %s, want 7 days", d)
	}
	if _, err := verify(auth.SigningKey{ID: "2026-10", Secret: tokenKeyOld}); err == nil {
		t.Error("a token of the new key verified with only the old one")
	}

	// A bare key, as before rotation, signs as "default".
	env["ZENKLAV_JWT_SIGNING_KEY"] = tokenKeyOld
	token, _, err = runToken(t, env, "--role", "admin", "--tenant", "*", "--sub", "root@example.test")
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil || parsed.Header["kid"] != auth.DefaultKeyID {
		t.Errorf("header %v (%v), want kid %q", parsed.Header, err, auth.DefaultKeyID)
	}

	// Without a connections file (sandbox mode) any tenant is taken.
	delete(env, "ZENKLAV_CONNECTIONS_FILE")
	if _, _, err := runToken(t, env, "--role", "marketer", "--tenant", "sandbox"); err != nil {
		t.Errorf("sandbox tenant: %v", err)
	}
}

func TestTokenCommandRefuses(t *testing.T) {
	env := map[string]string{
		"ZENKLAV_JWT_SIGNING_KEY":  tokenKeyNew,
		"ZENKLAV_CONNECTIONS_FILE": "../../config/testdata/connections.yaml",
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string // changes to env
		want string
	}{
		{"unknown role", []string{"--role", "agent", "--tenant", "acme"}, nil, `role "agent"`},
		{"no role", []string{"--tenant", "acme"}, nil, "--role is required"},
		{"no tenant", []string{"--role", "marketer"}, nil, "--tenant is required"},
		{"tenant not in the connections file", []string{"--role", "marketer", "--tenant", "initech"}, nil, `tenant "initech" is not a connection`},
		{"every tenant for a marketer", []string{"--role", "marketer", "--tenant", "*"}, nil, "only an admin"},
		{"ttl over 90 days", []string{"--role", "marketer", "--tenant", "acme", "--ttl", "91d"}, nil, "at most"},
		{"ttl negative", []string{"--role", "marketer", "--tenant", "acme", "--ttl", "-1h"}, nil, "positive"},
		{"ttl not a duration", []string{"--role", "marketer", "--tenant", "acme", "--ttl", "a week"}, nil, `--ttl="a week"`},
		{"positional argument", []string{"--role", "marketer", "acme"}, nil, `unexpected argument "acme"`},
		{"no signing key", []string{"--role", "marketer", "--tenant", "acme"}, map[string]string{"ZENKLAV_JWT_SIGNING_KEY": ""}, "ZENKLAV_JWT_SIGNING_KEY is empty"},
		{"short signing key", []string{"--role", "marketer", "--tenant", "acme"}, map[string]string{"ZENKLAV_JWT_SIGNING_KEY": "short"}, "at least 32"},
		{"missing connections file", []string{"--role", "marketer", "--tenant", "acme"}, map[string]string{"ZENKLAV_CONNECTIONS_FILE": "/nonexistent.yaml"}, "connections file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			for k, v := range tc.env {
				e[k] = v
			}
			token, _, err := runToken(t, e, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("token %q = %v, want an error containing %q", tc.args, err, tc.want)
			}
			if token != "" {
				t.Errorf("printed %q on a refusal", token)
			}
			if strings.Contains(err.Error(), tokenKeyNew) {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
}

func TestTokenCommandHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "-h"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-role", "-tenant", "-ttl", "-sub", "ZENKLAV_JWT_SIGNING_KEY", "head -n1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("token -h does not mention %s:\n%s", want, out.String())
		}
	}
}

func TestBaseURL(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080", "0.0.0.0:80": "http://localhost:80", ":8080": "http://localhost:8080",
		"[::]:8080": "http://localhost:8080", "[::1]:8080": "http://[::1]:8080", "zenklav.internal:8080": "http://zenklav.internal:8080",
	} {
		if got := baseURL(addr); got != want {
			t.Errorf("baseURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
