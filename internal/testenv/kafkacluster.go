package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// KafkaCluster is a Kafka cluster of one test's own: KRaft nodes that are each a broker and a
// controller (the controller quorum has every node as a voter), on loopback ports of their
// own, started with build/kafka.sh. Each node is a Server, to kill, freeze, stop and start
// again on its data like a single broker; the cluster goes on while a majority runs.
type KafkaCluster struct {
	// Nodes are the brokers, node id i+1 at Nodes[i].
	Nodes []*Server
}

// StartKafkaCluster starts a cluster of n Kafka nodes (KRaft) and returns once every broker
// has started. Its internal topics (consumer offsets) have min(3, n) replicas, as in
// production; a topic's replication is what its creator asks for (Kafka's default is one
// replica). Without the test servers' environment (KafkaEnv), it skips the test, or fails it
// in CI, as StartKafka does.
func StartKafkaCluster(t testing.TB, n int) *KafkaCluster {
	t.Helper()
	need(t, KafkaEnv, "Kafka")
	ports, err := freePorts(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	voters := make([]string, n)
	for i := range n {
		voters[i] = fmt.Sprintf("%d@127.0.0.1:%s", i+1, ports[2*i+1])
	}
	id, err := clusterID()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &KafkaCluster{}
	for i := range n {
		env := []string{fmt.Sprintf("KAFKA_NODE_ID=%d", i+1), "KAFKA_VOTERS=" + strings.Join(voters, ","), "KAFKA_CLUSTER_ID=" + id}
		c.Nodes = append(c.Nodes, newServer(t, "kafka", "kafka.sh", filepath.Join(dir, fmt.Sprintf("kafka-%d", i+1)), ports[2*i:2*i+2], env))
	}
	// Side by side: no node is ready before a majority of the voters runs.
	outs, errs := make([][]byte, n), make([]error, n)
	var wg sync.WaitGroup
	for i, s := range c.Nodes {
		wg.Go(func() { outs[i], errs[i] = s.run(append([]string{"start", s.dir}, s.ports...)...) })
	}
	wg.Wait()
	for i := range c.Nodes {
		if errs[i] != nil {
			t.Fatalf("start kafka node %d: %v\n%s", i+1, errs[i], outs[i])
		}
		t.Logf("node %d: %s", i+1, bytes.TrimSpace(outs[i]))
	}
	return c
}

// Brokers is every node's address: the bootstrap list.
func (c *KafkaCluster) Brokers() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr
	}
	return out
}

// Node is the node whose broker id is id (1 to n).
func (c *KafkaCluster) Node(id int) *Server { return c.Nodes[id-1] }

// clusterID is a random Kafka cluster id, as Kafka's own Uuid.randomUuid makes: 16 random
// bytes in URL-safe base64 without padding, never starting with '-'.
func clusterID() (string, error) {
	for {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		if id := base64.RawURLEncoding.EncodeToString(b); id[0] != '-' {
			return id, nil
		}
	}
}

// Partitions asks the brokers in turn, each over a connection of its own, for the partitions
// of topic, by id: the first answer is what the cluster says now (a kafka-go Client may
// answer from its transport's cache, seconds old). Tests and the cluster bench watch leaders
// move with it.
func Partitions(brokers []string, topic string) ([]kafkago.Partition, error) {
	var errs []string
	for _, addr := range brokers {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := kafkago.DialContext(ctx, "tcp", addr)
		cancel()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		parts, err := conn.ReadPartitions(topic)
		conn.Close()
		if err == nil && len(parts) > 0 {
			slices.SortFunc(parts, func(a, b kafkago.Partition) int { return a.ID - b.ID })
			return parts, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %d partitions, %v", addr, len(parts), err))
	}
	return nil, fmt.Errorf("no broker told the partitions of %s: %s", topic, strings.Join(errs, "; "))
}
