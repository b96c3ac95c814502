package kafka

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/testenv"
)

// Ping is a real round trip: a live broker answers, a closed port and a frozen broker (one
// that takes the connection but never answers) are reported within PingTimeout, each by
// address, and one live broker among dead ones is enough.
func TestPing(t *testing.T) {
	live := testenv.Kafka(t)
	closed := closedAddr(t)
	frozen := frozenAddr(t)
	cases := []struct {
		name    string
		brokers []string
		wantErr []string
	}{
		{"live", []string{live}, nil},
		{"closed port", []string{closed}, []string{closed}},
		{"frozen broker", []string{frozen}, []string{frozen}},
		{"one live among dead", []string{frozen, closed, live}, nil},
		{"all dead", []string{frozen, closed}, []string{frozen, closed}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err := Ping(context.Background(), c.brokers)
			took := time.Since(start)
			if took > PingTimeout+500*time.Millisecond {
				t.Errorf("Ping took %s, more than its %s bound", took, PingTimeout)
			}
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("Ping: %v", err)
				}
				return
			}
			if zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE {
				t.Fatalf("Ping = %v, want EUNAVAILABLE", err)
			}
			for _, addr := range c.wantErr {
				if !strings.Contains(zenklav.ErrorMessage(err), addr) {
					t.Errorf("message %q does not name %s", zenklav.ErrorMessage(err), addr)
				}
			}
		})
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// frozenAddr is a loopback address that accepts connections and never answers, as a broker
// stopped with SIGSTOP does.
func frozenAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	return ln.Addr().String()
}
