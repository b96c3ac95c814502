package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/seal"
	"github.com/zenklav/zenklav/zendesk"
)

// `zenklav connections` and `zenklav secrets` as an operator uses them: apply is idempotent
// and --dry-run changes nothing, show and list print no secret, a rotation re-seals under the
// new key, and a key the store was not sealed with opens nothing.
func TestConnectionsCommand(t *testing.T) {
	broker := testenv.Kafka(t)
	id := fmt.Sprintf("cli-%d", rand.N(1_000_000))
	secrets := []string{"zd-token-" + id, "webhook-signing-secret-" + id, "pk_private_" + id}
	file := filepath.Join(t.TempDir(), "connections.json")
	if err := os.WriteFile(file, fmt.Appendf(nil, `{"connections":[{"id":%q,"zendesk":{"subdomain":%q,"email":"ops@example.com",
		"api_token":%q,"webhook_secrets":[%q],"brands":"all"},"klaviyo":{"private_key":%q}}]}`, id, id, secrets[0], secrets[1], secrets[2]), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := func(key string, args ...string) (string, error) {
		var out bytes.Buffer
		env := map[string]string{"ZENKLAV_KAFKA_BROKERS": broker, "ZENKLAV_SECRETS_KEY": key, "ZENKLAV_LOG_LEVEL": "error",
			"ZENKLAV_CONNECTIONS_TOPIC": "connections-" + id} // a store of the test's own: rotate reads it whole
		err := run(context.Background(), args, func(k string) string { return env[k] }, &out)
		for _, s := range secrets {
			if strings.Contains(out.String(), s) || err != nil && strings.Contains(err.Error(), s) {
				t.Errorf("zenklav %q printed a secret:\n%s %v", args, out.String(), err)
			}
		}
		return out.String(), err
	}
	newKey := func() string {
		out, err := cmd("", "secrets", "new-key")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		return lines[len(lines)-1]
	}
	key := newKey()
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"connections", "apply", "-f", file, "--dry-run"}, "would add " + id},
		{[]string{"connections", "show", id}, ""}, // error: not there yet
		{[]string{"connections", "apply", "-f", file}, "added " + id},
		{[]string{"connections", "apply", "-f", file}, "unchanged " + id},
		{[]string{"connections", "show", id}, `"api_token": "[redacted]"`},
		{[]string{"connections", "disable", id}, id + " disabled"},
	} {
		out, err := cmd(key, step.args...)
		if step.want == "" {
			if err == nil {
				t.Errorf("zenklav %q succeeded before the apply:\n%s", step.args, out)
			}
			continue
		}
		if err != nil || !strings.Contains(out, step.want) {
			t.Fatalf("zenklav %q = %v:\n%s\nwant %q", step.args, err, out, step.want)
		}
	}
	next := newKey()
	if out, err := cmd(next+","+key, "secrets", "rotate"); err != nil || !strings.Contains(out, "re-sealed") {
		t.Fatalf("rotate = %v:\n%s", err, out)
	}
	if out, err := cmd(next, "connections", "show", id); err != nil || !strings.Contains(out, `"state": "disabled"`) {
		t.Errorf("show with the new key alone after the rotation = %v:\n%s", err, out)
	}
	if _, err := cmd(key, "connections", "show", id); err == nil || !strings.Contains(err.Error(), "does not hold") {
		t.Errorf("show with the old key alone after the rotation = %v, want a refusal", err)
	}
	if _, err := cmd("", "connections", "list"); err == nil || !strings.Contains(err.Error(), "ZENKLAV_SECRETS_KEY is empty") {
		t.Errorf("list without a key = %v", err)
	}
	if out, err := cmd(next, "connections", "remove", id); err != nil || !strings.Contains(out, "removed") {
		t.Errorf("remove = %v:\n%s", err, out)
	}
}

// A connection applied to the store is in force within 5 s in every running process, without
// a restart: two `zenklav api` sharing the store both accept its webhooks, refused as unknown
// before; disabled, both refuse them again within 5 s.
func TestConnectionsAtRunTime(t *testing.T) {
	broker := testenv.Kafka(t)
	id := fmt.Sprintf("live-%d", rand.N(1_000_000))
	key, err := seal.NewKey("live")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ZENKLAV_KAFKA_BROKERS": broker, "ZENKLAV_SECRETS_KEY": key, "ZENKLAV_LOG_LEVEL": "info",
		"ZENKLAV_CONNECTIONS_TOPIC": "connections-" + id, "ZENKLAV_HTTP_ADDR": "127.0.0.1:0"}
	// Two processes, each on a port of its own, as two replicas behind a load balancer.
	bases := []string{startRole(t, "api", env, &syncBuffer{}), startRole(t, "api", env, &syncBuffer{})}
	secret := "webhook-signing-secret-" + id
	post := func(base string) int {
		ts := zendesk.Timestamp(time.Now())
		body := `{"type":"zen:event-type:ticket.created","account_id":1,"id":"` + id + `-1","time":"` + time.Now().UTC().Format(time.RFC3339) +
			`","subject":"zen:ticket:1","detail":{"id":"1","status":"NEW","requester_id":"2","subject":"hi"},"event":{}}`
		req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/zendesk/"+id, strings.NewReader(body))
		req.Header.Set(zendesk.HeaderSignatureTimestamp, ts)
		req.Header.Set(zendesk.HeaderSignature, zendesk.Sign(secret, ts, []byte(body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, base := range bases {
		if code := post(base); code != http.StatusNotFound {
			t.Fatalf("process %d: a webhook of a connection not yet applied = %d, want 404", i+1, code)
		}
	}
	file := filepath.Join(t.TempDir(), "connections.json")
	if err := os.WriteFile(file, fmt.Appendf(nil, `{"connections":[{"id":%q,"zendesk":{"subdomain":%q,"webhook_secrets":[%q],"brands":"all"}}]}`,
		id, id, secret), 0o600); err != nil {
		t.Fatal(err)
	}
	var cli bytes.Buffer
	applied := time.Now() // the clock runs from the command's start: the 5 s include it
	if err := run(context.Background(), []string{"connections", "apply", "-f", file}, func(k string) string { return env[k] }, &cli); err != nil {
		t.Fatalf("apply: %v\n%s", err, cli.String())
	}
	// waitCode waits until every process answers want, each within 5 s of the change; it asks
	// them in turn, so each one's time is its own.
	waitCode := func(want int, what string) {
		t.Helper()
		pending := map[int]int{1: 0, 2: 0} // process → its last answer
		for len(pending) > 0 {
			for i := range pending {
				if code := post(bases[i-1]); code == want {
					t.Logf("%s: process %d answers %d after %s", what, i, want, time.Since(applied).Round(time.Millisecond))
					delete(pending, i)
				} else {
					pending[i] = code
				}
			}
			if len(pending) > 0 && time.Since(applied) > 5*time.Second {
				t.Fatalf("%s: 5 s later, processes still answer the webhook so (process:status): %v; want %d", what, pending, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCode(http.StatusAccepted, "applied")
	applied = time.Now()
	if err := run(context.Background(), []string{"connections", "disable", id}, func(k string) string { return env[k] }, &cli); err != nil {
		t.Fatal(err)
	}
	waitCode(http.StatusNotFound, "disabled")
}
