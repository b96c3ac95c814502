package resilience_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// The bounds issue 13 states for /readyz.
const (
	readyzAnswersWithin = 2 * time.Second // every answer, and a dependency's loss seen
	readyzRecovers      = 5 * time.Second // a dependency back, seen
	readyzEvery         = 100 * time.Millisecond
)

// readiness asks zenklav's /readyz every readyzEvery, each request on its own (a slow answer
// does not delay the next question), and keeps every answer.
type readiness struct {
	t      *testing.T
	url    string
	client *http.Client
	stopCh chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	mu    sync.Mutex
	polls []poll
}

// poll is one GET /readyz and its answer.
type poll struct {
	sent, done time.Time
	status     int // 0: no answer
	err        error
	body       struct {
		Ready  bool           `json:"ready"`
		Checks map[string]any `json:"checks"`
	}
}

// check is what the answer said of dep: "ok", its message, or "" when it did not name it.
func (p poll) check(dep string) string {
	v, ok := p.body.Checks[dep]
	if !ok {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

func (p poll) String() string {
	if p.err != nil {
		return "no answer: " + p.err.Error()
	}
	b, _ := json.Marshal(p.body)
	return fmt.Sprintf("%d %s", p.status, b)
}

// pollReadiness starts asking the zenklav whose HTTP listener is addr.
func pollReadiness(t *testing.T, addr string) *readiness {
	r := &readiness{
		t: t, url: "http://" + addr + "/readyz", stopCh: make(chan struct{}),
		// Long enough to see how late a slow answer comes; the bound is checked on the times.
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	t.Cleanup(r.stop)
	r.wg.Go(func() {
		tick := time.NewTicker(readyzEvery)
		defer tick.Stop()
		for {
			r.wg.Go(r.ask)
			select {
			case <-r.stopCh:
				return
			case <-tick.C:
			}
		}
	})
	return r
}

func (r *readiness) ask() {
	p := poll{sent: time.Now()}
	resp, err := r.client.Get(r.url)
	if err == nil {
		p.status = resp.StatusCode
		err = json.NewDecoder(resp.Body).Decode(&p.body)
		resp.Body.Close()
		if err != nil {
			err = fmt.Errorf("status %d, body not {\"ready\":…,\"checks\":{…}}: %w", p.status, err)
		}
	}
	p.err, p.done = err, time.Now()
	r.mu.Lock()
	r.polls = append(r.polls, p)
	r.mu.Unlock()
}

// stop stops asking and waits for the answers under way.
func (r *readiness) stop() {
	r.once.Do(func() { close(r.stopCh) })
	r.wg.Wait()
}

// sent returns the polls sent in [from, to), in the order they were sent.
func (r *readiness) sent(from, to time.Time) []poll {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []poll
	for _, p := range r.polls {
		if !p.sent.Before(from) && p.sent.Before(to) {
			out = append(out, p)
		}
	}
	// Answers arrive out of order; the questions were asked in order.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].sent.Before(out[j-1].sent); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// waitReady waits until /readyz answers 200.
func (r *readiness) waitReady(within time.Duration, alive func() error) {
	r.t.Helper()
	start := time.Now()
	waitFor(r.t, within, alive, func() (bool, string) {
		ps := r.sent(start, time.Now().Add(time.Hour))
		for _, p := range ps {
			if p.err == nil && p.status == http.StatusOK {
				return true, ""
			}
		}
		last := "no answer yet"
		if len(ps) > 0 {
			last = ps[len(ps)-1].String()
		}
		return false, "/readyz is not 200; its last answer: " + last
	})
}

// notReadyBy expects a 503 that names dep as not ok, answered in [from, from+within].
func (r *readiness) notReadyBy(from time.Time, within time.Duration, dep, what string, start time.Time) {
	r.t.Helper()
	r.expect(from, within, what, start, func(p poll) bool {
		c := p.check(dep)
		return p.status == http.StatusServiceUnavailable && !p.body.Ready && c != "" && c != "ok"
	}, fmt.Sprintf("503 with checks.%s not ok", dep))
}

// readyBy expects a 200 with ready true, answered in [from, from+within].
func (r *readiness) readyBy(from time.Time, within time.Duration, what string, start time.Time) {
	r.t.Helper()
	r.expect(from, within, what, start, func(p poll) bool {
		return p.status == http.StatusOK && p.body.Ready
	}, "200 with ready true")
}

func (r *readiness) expect(from time.Time, within time.Duration, what string, start time.Time, match func(poll) bool, want string) {
	r.t.Helper()
	to := from.Add(within)
	var ps []poll
	// The answers given in the window, and the questions asked in it, answered or not.
	for _, p := range r.sent(time.Time{}, to) {
		if !p.done.Before(from) && !p.done.After(to) || !p.sent.Before(from) {
			ps = append(ps, p)
		}
	}
	for _, p := range ps {
		if p.err == nil && match(p) && !p.done.Before(from) && !p.done.After(to) {
			r.t.Logf("readyz: %s: %s at %s, %s after", what, want, rel(p.done, start), p.done.Sub(from).Round(10*time.Millisecond))
			return
		}
	}
	r.t.Errorf("/readyz did not answer %s within %s of %s (%s); it answered:\n%s",
		want, within, what, rel(from, start), r.describe(ps, start))
}

// honest expects no 200 answered in [from, to): the dependency was away all along. (A
// question asked then may be answered 200 later, once it is back.)
func (r *readiness) honest(from, to time.Time, what string, start time.Time) {
	r.t.Helper()
	var lies []poll
	for _, p := range r.sent(time.Time{}, to) {
		if p.status == http.StatusOK && !p.done.Before(from) && p.done.Before(to) {
			lies = append(lies, p)
		}
	}
	if len(lies) > 0 {
		r.t.Errorf("/readyz answered 200 %d times while %s (%s to %s):\n%s",
			len(lies), what, rel(from, start), rel(to, start), r.describe(lies, start))
	}
}

// prompt expects every question of the test answered within readyzAnswersWithin.
func (r *readiness) prompt(start time.Time) {
	r.t.Helper()
	var slow []poll
	all := r.sent(time.Time{}, time.Now().Add(time.Hour))
	for _, p := range all {
		if p.err != nil || p.done.Sub(p.sent) > readyzAnswersWithin {
			slow = append(slow, p)
		}
	}
	if len(slow) > 0 {
		r.t.Errorf("%d of %d /readyz questions were not answered within %s:\n%s",
			len(slow), len(all), readyzAnswersWithin, r.describe(slow, start))
	}
}

// describe lists polls, at most 15 (the first ten, then the last five).
func (r *readiness) describe(ps []poll, start time.Time) string {
	var lines []string
	for i, p := range ps {
		if len(ps) > 15 && i == 10 {
			lines = append(lines, fmt.Sprintf("  … %d more …", len(ps)-15))
		}
		if len(ps) > 15 && i >= 10 && i < len(ps)-5 {
			continue
		}
		lines = append(lines, fmt.Sprintf("  asked %s, answered %s (after %s): %s", rel(p.sent, start), rel(p.done, start), p.done.Sub(p.sent).Round(time.Millisecond), p))
	}
	if len(lines) == 0 {
		return "  (nothing)"
	}
	return strings.Join(lines, "\n")
}
