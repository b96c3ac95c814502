package connstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstore"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/seal"
)

func conn(id string) zenklav.Connection {
	return zenklav.Connection{ID: id,
		Zendesk: zenklav.ZendeskSettings{Subdomain: id, Email: "ops@" + id + ".example", APIToken: zenklav.Secret("zd-token-" + id),
			WebhookSecrets: []zenklav.Secret{zenklav.Secret("webhook-signing-secret-" + id)}, Brands: zenklav.Brands{All: true}},
		Klaviyo: zenklav.KlaviyoSettings{PrivateKey: zenklav.Secret("pk_private_key_" + id)},
	}
}

// The store seals every secret at rest (the topic holds none in the clear), is shared by
// every process that opens it, and refuses what it cannot open: a wrong key, a value moved to
// another connection.
func TestStore(t *testing.T) {
	brokers := []string{testenv.Kafka(t)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	pub := kafka.NewProducer(logger, brokers)
	defer pub.Close()
	key, _ := seal.NewKey("test")
	keys, err := seal.ParseKeyring(zenklav.Secret(key))
	if err != nil {
		t.Fatal(err)
	}
	topic := fmt.Sprintf("connections-test-%d", rand.N(1_000_000))
	open := func(keys *seal.Keyring) *connstore.Store {
		s, err := connstore.Open(ctx, logger, brokers, kafka.Topic{Name: topic, Partitions: 3}, pub, keys)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a, b := open(keys), open(keys)
	id := fmt.Sprintf("store-%d", rand.N(1_000_000))
	if err := a.Put(ctx, conn(id), false); err != nil {
		t.Fatal(err)
	}
	list, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got *connstore.Entry
	for i := range list {
		if list[i].Connection.ID == id {
			got = &list[i]
		}
	}
	if got == nil || !connstore.Same(got.Connection, conn(id)) || got.Disabled {
		t.Fatalf("another process reads %+v", got)
	}
	// At rest: no secret in the clear.
	for _, raw := range topicValues(t, brokers, topic) {
		for _, secret := range []string{"zd-token-" + id, "webhook-signing-secret-" + id, "pk_private_key_" + id} {
			if strings.Contains(raw, secret) {
				t.Errorf("connections.v1 holds %q in the clear", secret)
			}
		}
	}
	// A wrong key opens nothing, and says which key it would need.
	other, _ := seal.NewKey("other")
	wrong, _ := seal.ParseKeyring(zenklav.Secret(other))
	if _, err := open(wrong).Get(id); zenklav.ErrorCode(err) != zenklav.EINVALID || !strings.Contains(err.Error(), keys.Current()) {
		t.Errorf("Get with a wrong key = %v", err)
	}
	// Disable keeps it; remove deletes it for everyone.
	if err := a.Put(ctx, conn(id), true); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := a.List(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(id); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("Get after remove = %v, want ENOTFOUND", err)
	}
}

// topicValues reads every value of the store's topic.
func topicValues(t *testing.T, brokers []string, topic string) []string {
	t.Helper()
	var out []string
	for p := range 3 {
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 50 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				break
			}
			out = append(out, string(m.Value))
		}
		cancel()
		r.Close()
	}
	if len(out) == 0 {
		t.Fatal("connections.v1 is empty")
	}
	return out
}
