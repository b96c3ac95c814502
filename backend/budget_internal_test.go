package backend

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOverloadLog: a flood of refusals logs one line when it starts and one when it ends,
// quiet after the last refusal; the next flood logs again. It is internal because the
// quiet period is: a test through the server would wait overloadQuiet.
func TestOverloadLog(t *testing.T) {
	var mu sync.Mutex
	var logs bytes.Buffer
	o := &overloadLog{logger: slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil)), limit: 1 << 20, quiet: 50 * time.Millisecond}
	text := func() string {
		mu.Lock()
		defer mu.Unlock()
		return logs.String()
	}
	count := func(s string) int { return strings.Count(text(), s) }
	for range 2 {
		started, ended := count("webhooks refused"), count("webhooks taken again")
		for range 1000 {
			o.refused()
		}
		if count("webhooks refused") != started+1 || count("webhooks taken again") != ended {
			t.Fatalf("after a flood of refusals:\n%s", text())
		}
		deadline := time.Now().Add(5 * time.Second)
		for count("webhooks taken again") == ended {
			if time.Now().After(deadline) {
				t.Fatalf("no line saying the overload ended:\n%s", text())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if count("refused=1000") != 1+ended {
			t.Errorf("the end's line does not count the flood's 1000 refusals:\n%s", text())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
