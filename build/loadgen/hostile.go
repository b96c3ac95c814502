package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zenklav/zenklav/zendesk"
)

// hostile measures what hostile clients cost zenklav's webhook endpoint (issue 13): -conns
// connections, each posting -size bodies in a loop with a signature that is not the
// connection's (-sig wellformed: the base64 of 32 random bytes and a fresh timestamp, so
// only the body's HMAC can tell; -sig x: the tester's "x"), while a sender posts valid signed
// webhooks at -rate, each on its own goroutine as Zendesk's are. It reports the share of
// valid webhooks accepted and their latency, what the hostile requests were answered, and
// with -pid the peak RSS of that process (VmHWM: the process should be fresh).
func hostile(args []string) error {
	fs := flag.NewFlagSet("hostile", flag.ExitOnError)
	url := fs.String("url", "", "zenklav's webhook URL")
	secret := fs.String("secret", "", "the connection's signing secret, for the valid webhooks")
	conns := fs.Int("conns", 1000, "hostile connections")
	size := fs.Int("size", zendesk.MaxWebhookBody, "bytes of each hostile body")
	sig := fs.String("sig", "wellformed", "the hostile signature: wellformed (random, base64 of 32 bytes) or x")
	rate := fs.Int("rate", 50, "valid webhooks per second")
	duration := fs.Duration("duration", 30*time.Second, "how long the valid webhooks are sent")
	hold := fs.Duration("hold", 0, "how long each hostile request holds back its body's last byte, as a slow sender would: the body's bytes stay in flight")
	rampUp := fs.Duration("ramp-up", 3*time.Second, "how long the hostile clients run before the valid webhooks start")
	pid := fs.Int("pid", 0, "zenklav's pid, to report its peak memory")
	label := fs.String("label", "", "what to call this run in the table")
	fs.Parse(args)
	if *url == "" || *secret == "" || *rate <= 0 || (*sig != "wellformed" && *sig != "x") {
		return fmt.Errorf("hostile needs -url, -secret, a positive -rate and -sig wellformed or x")
	}
	ctx, stop := context.WithCancel(context.Background())
	h := &hostileClients{url: *url, body: bytes.Repeat([]byte("x"), *size), sig: *sig, hold: *hold, answers: map[string]int{},
		client: &http.Client{Transport: &http.Transport{MaxConnsPerHost: *conns, MaxIdleConnsPerHost: *conns}}}
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() { h.run(ctx) })
	}
	time.Sleep(*rampUp)
	valid := sendValid(*url, *secret, *rate, *duration)
	stop()
	wg.Wait()
	hwm := ""
	if *pid != 0 {
		var err error
		if hwm, err = peakRSS(*pid); err != nil {
			return err
		}
	}
	run := hostileRun{label: *label, conns: *conns, size: *size, rate: *rate, duration: *duration, sig: *sig, hold: *hold}
	run.print(valid, h.summary(), hwm)
	return nil
}

// hostileClients are the hostile connections and what they were answered.
type hostileClients struct {
	url    string
	body   []byte // shared: each request reads it through its own bytes.Reader
	sig    string
	hold   time.Duration
	client *http.Client

	mu      sync.Mutex
	answers map[string]int // by status, or "error" for a request that got none
}

// run posts hostile webhooks until ctx ends.
func (h *hostileClients) run(ctx context.Context) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.url, &heldBody{ctx: ctx, body: h.body, hold: h.hold, closed: make(chan struct{})})
		req.ContentLength = int64(len(h.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(zendesk.HeaderSignatureTimestamp, zendesk.Timestamp(time.Now()))
		req.Header.Set(zendesk.HeaderSignature, h.signature())
		answer := "error"
		if resp, err := h.client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answer = strconv.Itoa(resp.StatusCode)
		} else if ctx.Err() != nil {
			return // stopped: not an answer
		} else {
			time.Sleep(10 * time.Millisecond) // a refused connection: do not spin
		}
		h.mu.Lock()
		h.answers[answer]++
		h.mu.Unlock()
	}
}

// heldBody is a hostile request's body: all but its last byte at once, then that byte after
// hold, unless the request ends first.
type heldBody struct {
	ctx    context.Context
	body   []byte // shared with the other requests, read only
	off    int
	hold   time.Duration
	closed chan struct{}
	once   sync.Once
}

func (b *heldBody) Read(p []byte) (int, error) {
	end := len(b.body)
	if b.hold > 0 && b.off < end-1 {
		end-- // the last byte waits
	} else if b.hold > 0 && b.off == end-1 {
		select {
		case <-time.After(b.hold):
		case <-b.closed:
			return 0, io.ErrClosedPipe
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
	}
	if b.off == len(b.body) {
		return 0, io.EOF
	}
	n := copy(p, b.body[b.off:end])
	b.off += n
	return n, nil
}

// Close ends a hold: the transport closes the body when the answer came first.
func (b *heldBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

func (h *hostileClients) signature() string {
	if h.sig == "x" {
		return "x"
	}
	mac := make([]byte, 32)
	rand.Read(mac)
	return base64.StdEncoding.EncodeToString(mac)
}

// summary says how the hostile requests were answered, e.g. "503 ×9,120, 401 ×310".
func (h *hostileClients) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	keys := make([]string, 0, len(h.answers))
	total := 0
	for k, n := range h.answers {
		keys = append(keys, k)
		total += n
	}
	slices.SortFunc(keys, func(a, b string) int { return h.answers[b] - h.answers[a] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%s", k, thousands(h.answers[k]))
	}
	return fmt.Sprintf("%s hostile requests: %s", thousands(total), strings.Join(parts, ", "))
}

// validRun is what became of the valid webhooks.
type validRun struct {
	sent, accepted int
	latency        []time.Duration // of the accepted ones, sorted
	other          map[string]int  // what the others were answered
	firstErr       string          // the first error of a request that got no answer
}

// sendValid posts rate signed webhooks a second for duration, each on its own goroutine.
func sendValid(url, secret string, rate int, duration time.Duration) validRun {
	n := rate * int(duration.Seconds())
	ts := zendesk.Timestamp(time.Now())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 15 * time.Second}
	status := make([]string, n)
	errs := make([]string, n)
	lat := make([]time.Duration, n)
	sent := make([]time.Time, n)
	paceWebhooks(time.Now(), time.Second/time.Duration(rate), 0, n, sent, func(i int) {
		body := fmt.Sprintf(`{"type":"zen:event-type:ticket.created","account_id":1,"id":"hostile-%d-%d","time":"%s",`+
			`"detail":{"id":"%d","status":"NEW","subject":"Where is my order?","requester_id":"%d","brand_id":"1"},"event":{}}`,
			time.Now().UnixNano(), i, ts, i+1, 1000+i)
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(zendesk.HeaderSignatureTimestamp, ts)
		req.Header.Set(zendesk.HeaderSignature, zendesk.Sign(secret, ts, []byte(body)))
		t0 := time.Now()
		resp, err := client.Do(req)
		lat[i] = time.Since(t0)
		if err != nil {
			status[i], errs[i] = "error", err.Error()
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status[i] = strconv.Itoa(resp.StatusCode)
	})
	r := validRun{sent: n, other: map[string]int{}}
	for i, s := range status {
		if s == "202" {
			r.accepted++
			r.latency = append(r.latency, lat[i])
		} else {
			r.other[s]++
		}
		if r.firstErr == "" {
			r.firstErr = errs[i]
		}
	}
	slices.Sort(r.latency)
	return r
}

// hostileRun is what a hostile measurement was asked to do.
type hostileRun struct {
	label          string
	conns, size    int
	rate           int
	duration, hold time.Duration
	sig            string
}

// print prints the run's rows: the valid webhooks, and with hwm zenklav's peak memory.
func (r hostileRun) print(v validRun, answers, hwm string) {
	kind := "well-formed wrong signatures, fresh timestamps"
	if r.sig == "x" {
		kind = "signature `x`"
	}
	if r.hold > 0 {
		kind += fmt.Sprintf(", each body's last byte held %s", r.hold)
	}
	lat := "none accepted"
	if len(v.latency) > 0 {
		lat = fmt.Sprintf("accepted ones p50 %s, p99 %s, max %s", ms(quantile(v.latency, .50)), ms(quantile(v.latency, .99)), ms(v.latency[len(v.latency)-1]))
	}
	var other []string
	for s, n := range v.other {
		other = append(other, fmt.Sprintf("%s ×%d", s, n))
	}
	slices.Sort(other)
	if len(other) > 0 {
		lat += "; the others: " + strings.Join(other, ", ")
	}
	if v.firstErr != "" {
		lat += " (first error: " + v.firstErr + ")"
	}
	fmt.Printf("| hostile clients (%s)%s | %s connections × %.2g MiB bodies; valid webhooks at %d/s for %s beside them | %s of %s valid accepted (%.1f %%) | %s; %s |\n",
		kind, r.label, thousands(r.conns), float64(r.size)/(1<<20), r.rate, r.duration, thousands(v.accepted), thousands(v.sent), pct(v.accepted, v.sent), lat, answers)
	if hwm != "" {
		fmt.Printf("| peak memory (VmHWM), hostile clients (%s)%s | during that run | %s | |\n", kind, r.label, hwm)
	}
}
