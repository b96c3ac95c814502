package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ClickHouseCluster is a ClickHouse cluster of one test's own: shards × replicas servers
// (build/clickhouse.sh, the Debian 18.16 server) on loopback ports of their own, with one
// standalone ZooKeeper (build/zookeeper.sh) for their replication and ON CLUSTER queue. Every
// server knows the cluster as Name (remote_servers, internal_replication) and its place in
// it by the macros {shard} and {replica}. Each server is a Server, to kill and start again.
type ClickHouseCluster struct {
	// Name is the cluster's name in remote_servers.
	Name string
	// Shards are the servers, Shards[s][r] replica r+1 of shard s+1.
	Shards    [][]*Server
	ZooKeeper *Server
}

// StartClickHouseCluster starts ZooKeeper and shards × replicas ClickHouse servers and
// returns once all answer. The servers keep small caches: four of them share the machine
// with the rest of the tests. Without the test servers' environment (ClickHouseEnv), it
// skips the test, or fails it in CI, as ClickHouse does.
func StartClickHouseCluster(t testing.TB, shards, replicas int) *ClickHouseCluster {
	t.Helper()
	need(t, ClickHouseEnv, "ClickHouse")
	root := ModuleRoot(t)
	if out, err := exec.Command("bash", filepath.Join(root, "build", "zookeeper.sh"), "jars").CombinedOutput(); err != nil {
		t.Fatalf("fetch the ZooKeeper jars: %v\n%s", err, out)
	}
	n := shards * replicas
	ports, err := freePorts(1 + 3*n)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &ClickHouseCluster{Name: "zenklav"}
	c.ZooKeeper = newServer(t, "zookeeper", "zookeeper.sh", filepath.Join(dir, "zookeeper"), ports[:1], nil)
	c.ZooKeeper.Start()
	zk := strings.TrimPrefix(c.ZooKeeper.Addr, "127.0.0.1:")

	var remote strings.Builder
	for s := range shards {
		remote.WriteString("<shard><internal_replication>true</internal_replication>")
		for r := range replicas {
			fmt.Fprintf(&remote, "<replica><host>127.0.0.1</host><port>%s</port></replica>", ports[1+3*(s*replicas+r)])
		}
		remote.WriteString("</shard>")
	}
	for s := range shards {
		var row []*Server
		for r := range replicas {
			p := ports[1+3*(s*replicas+r) : 1+3*(s*replicas+r)+3]
			sdir := filepath.Join(dir, fmt.Sprintf("clickhouse-%d-%d", s+1, r+1))
			conf := fmt.Sprintf(`<?xml version="1.0"?>
<!-- Written by testenv.StartClickHouseCluster: shard %d, replica %d of cluster %s. -->
<yandex>
    <zookeeper><node><host>127.0.0.1</host><port>%s</port></node><session_timeout_ms>10000</session_timeout_ms></zookeeper>
    <remote_servers><%s>%s</%s></remote_servers>
    <macros><shard>%d</shard><replica>r%d</replica></macros>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>%s</interserver_http_port>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>50</max_concurrent_queries>
</yandex>
`, s+1, r+1, c.Name, zk, c.Name, remote.String(), c.Name, s+1, r+1, p[2])
			if err := os.MkdirAll(filepath.Join(sdir, "etc", "config.d"), 0o755); err != nil {
				t.Fatal(err)
			}
			// build/clickhouse.sh writes config.xml; ClickHouse merges config.d into it.
			if err := os.WriteFile(filepath.Join(sdir, "etc", "config.d", "cluster.xml"), []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			row = append(row, newServer(t, "clickhouse", "clickhouse.sh", sdir, p[:2], nil))
		}
		c.Shards = append(c.Shards, row)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, s := range c.servers() {
			b, _ := os.ReadFile(filepath.Join(s.dir, "log", "clickhouse-server.err.log"))
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("last errors of %s:\n%s", s.Addr, b)
		}
		b, _ := os.ReadFile(filepath.Join(c.ZooKeeper.dir, "zookeeper.out"))
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("last lines of zookeeper:\n%s", b)
	})
	c.startAll()
	return c
}

// startAll starts the ClickHouse servers side by side: each takes a few seconds.
func (c *ClickHouseCluster) startAll() {
	c.ZooKeeper.t.Helper()
	n := len(c.servers())
	var wg sync.WaitGroup
	outs, errs := make([][]byte, n), make([]error, n)
	for i, s := range c.servers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = s.run(append([]string{"start", s.dir}, s.ports...)...)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			c.ZooKeeper.t.Fatalf("start clickhouse %d of the cluster: %v\n%s", i+1, errs[i], outs[i])
		}
		c.ZooKeeper.t.Logf("%s", bytes.TrimSpace(outs[i]))
	}
}

// Addr is where a client reaches the cluster: the first replica of the first shard.
func (c *ClickHouseCluster) Addr() string { return c.Shards[0][0].Addr }

func (c *ClickHouseCluster) servers() []*Server {
	var all []*Server
	for _, row := range c.Shards {
		all = append(all, row...)
	}
	return all
}

// ClusterEnv turns on the tests that start a ClickHouse cluster of their own
// (`make test-cluster`): five servers are more than `make test` should start beside the rest.
const ClusterEnv = "ZENKLAV_TEST_CLICKHOUSE_CLUSTER"

// ClickHouseClusterOn skips the test unless ClusterEnv is set.
func ClickHouseClusterOn(t testing.TB) {
	t.Helper()
	if os.Getenv(ClusterEnv) == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not set under CI: `make test` sets it (and installs ZooKeeper)", ClusterEnv)
		}
		t.Skipf("%s not set: `make test` and `make test-cluster` run the ClickHouse cluster tests", ClusterEnv)
	}
}
