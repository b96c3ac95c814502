package kafka

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
)

// LaneConfig shapes RunLanes; zero values take the defaults.
type LaneConfig struct {
	// QueueSize bounds the deliveries waiting in one lane (default 2,000). A full lane
	// stops the fetch, and so every lane, until it drains, unless Overflow is set: the
	// bound keeps a backlog in Kafka rather than decoded in memory.
	QueueSize int
	// Overflow, when set, is where a message goes when its lane is full and has finished no
	// batch for ParkAfter (its dependency failing, not merely busy), instead of waiting: it
	// is written there (retried until written, as a dead letter is) and done here, so one
	// lane's failing dependency holds up no other lane, however long it lasts. Another
	// consumer reads that topic (the retry-topic pattern). A lane that is full but moving
	// holds the fetch as without Overflow: that is backpressure, not a failure.
	Overflow *DeadLetters
	// ParkAfter is how long a full lane may go without finishing a batch before its messages
	// are parked (default 5 s).
	ParkAfter time.Duration
	// Workers is how many batches of one lane are handled at once (default 4).
	Workers int
	// Linger is how long a lane waits for more deliveries after the first, to fill a batch
	// (default 100 ms).
	Linger time.Duration
	// ShutdownGrace is how long, on shutdown, batches being handled may take to finish
	// before their context ends (default 10 s); what they did not finish is handled again
	// after a restart. At a rebalance it is at most half the group's rebalance timeout, so
	// the member rejoins in time.
	ShutdownGrace time.Duration
	// CommitInterval is how often the done prefix of each partition is committed (default
	// 1 s).
	CommitInterval time.Duration
	// Queued, when set, is the gauge of deliveries waiting, by lane.
	Queued *prometheus.GaugeVec
}

func (c *LaneConfig) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Linger, 100*time.Millisecond)
	def(&c.ShutdownGrace, 10*time.Second)
	def(&c.CommitInterval, time.Second)
	def(&c.ParkAfter, 5*time.Second)
	if c.QueueSize <= 0 {
		c.QueueSize = 2_000
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
}

// Delivery is one fetched message on its way through a lane, with what the handler's Route
// made of it.
type Delivery[T any] struct {
	Msg     Message
	Value   T
	Weight  int       // its share of a batch (see LaneHandler.MaxWeight)
	Fetched time.Time // when this process first saw it: retry bounds count from here
	offsets *offsets
}

// Done marks the delivery handled (delivered, dead-lettered, or nothing to do): its offset
// may be committed once every message before it in its partition is done too.
func (d *Delivery[T]) Done() { d.offsets.done(d.Msg) }

// Routed is where Route sends a message: a lane, the decoded value, and its weight. A weight
// of 0 means there is nothing to do; the message is done at once.
type Routed[T any] struct {
	Lane   string
	Value  T
	Weight int
}

// LaneHandler is a role that RunLanes runs: messages go into lanes of their own (the emitter's
// are its connections), each with a bounded queue and its own workers, so one lane's slow or
// failing dependency never holds up another's until its queue is full.
type LaneHandler[T any] interface {
	// Route decodes a message and names its lane. An error makes the message a dead letter
	// with the error as its reason.
	Route(m Message) (Routed[T], error)
	// Ready blocks until lane may form another batch (its dependency's rate limit), or ctx
	// ends. A batch formed only then lets deliveries wait in the queue, where later ones can
	// still join them.
	Ready(ctx context.Context, lane string) error
	// MaxWeight is the most weight one batch of lane holds.
	MaxWeight(lane string) int
	// Handle handles one batch of a lane. Its calls to dependencies run on sendCtx, which
	// outlives ctx by the shutdown grace; once ctx ends it retries nothing more. Each
	// delivery must end Done, or be left: then it is handled again after a restart.
	Handle(ctx, sendCtx context.Context, lane string, batch []*Delivery[T])
}

// RunLanes consumes until ctx ends, handling messages out of order
// in h's lanes and committing, per partition, the offsets up to the first message not yet
// done. It follows the group's generations (generation.go): when one ends, by a rebalance or
// on the way out, it stops fetching, lets the batches being handled finish (for up to
// ShutdownGrace), commits what is done and drops what is queued, before its partitions go to
// their next owner, which handles the queued messages.
func RunLanes[T any](ctx context.Context, c *Consumer, cfg LaneConfig, h LaneHandler[T]) error {
	if c.cfg.DeadLetters == nil {
		return errors.New("lanes need a dead-letter topic for what they cannot route")
	}
	cfg.defaults()
	group, err := c.group()
	if err != nil {
		return err
	}
	defer group.Close() // leaves the group
	// On the way out the group is closed while the last generation drains: the member then
	// leaves once it is done, rather than first rejoin (a rebalance more for the others).
	defer context.AfterFunc(ctx, func() { group.Close() })()
	for {
		gen, err := c.nextGeneration(ctx, group)
		if err != nil {
			return nil // only ctx ends the wait
		}
		r := &laneRunner[T]{c: c, cfg: cfg, h: h, offsets: newOffsets(c.cfg.Topic), lanes: map[string]*lane[T]{}}
		done := make(chan struct{})
		gen.Start(func(genCtx context.Context) {
			defer close(done)
			r.run(ctx, genCtx, gen)
		})
		<-done
		if ctx.Err() != nil {
			return nil
		}
	}
}

// laneRunner is one generation's lanes.
type laneRunner[T any] struct {
	c       *Consumer
	cfg     LaneConfig
	h       LaneHandler[T]
	offsets *offsets
	lanes   map[string]*lane[T] // made on a lane's first message; only the fetch loop uses it
	workers sync.WaitGroup
}

// run handles the generation gen until ctx or the generation (genCtx) ends.
func (r *laneRunner[T]) run(ctx, genCtx context.Context, gen *kafkago.Generation) {
	// The partition readers, the lanes and the committer stop when fetching does.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(genCtx, stop)()
	m := r.c.join(runCtx, gen)
	// Batches being handled outlive runCtx by the grace, so a request under way is not cut
	// off mid-flight.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		r.commitEvery(runCtx, m)
	}()

	r.fetch(runCtx, sendCtx, m)
	stop()
	m.leave()
	grace := r.cfg.ShutdownGrace
	if ctx.Err() == nil { // a rebalance: the group waits RebalanceTimeout for this member to rejoin
		grace = min(grace, r.c.rc.RebalanceTimeout/2)
	}
	r.drain(cancelSends, grace)
	<-committed
	r.commit(context.WithoutCancel(ctx), m)
	for _, l := range r.lanes { // dropped: the partitions' next owner handles them
		l.queued.Sub(float64(len(l.in)))
	}
}

// drain waits for the lanes to finish the batches they handle, and ends those batches'
// context if they take longer than the grace.
func (r *laneRunner[T]) drain(cancelSends context.CancelFunc, grace time.Duration) {
	stopped := make(chan struct{})
	go func() {
		r.workers.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(grace):
		r.c.logger.Warn("batches under way did not finish in time; their messages are handled again by the partitions' next owner")
		cancelSends()
		<-stopped
	}
}

// fetch reads the generation's messages and hands each to its lane until ctx ends.
func (r *laneRunner[T]) fetch(ctx, sendCtx context.Context, from *member) {
	for {
		m, err := from.fetch(ctx)
		if err != nil {
			return // only ctx ends the fetch
		}
		r.offsets.add(m)
		d := &Delivery[T]{Msg: m, Fetched: time.Now(), offsets: r.offsets}
		routed, err := r.h.Route(m)
		if err != nil {
			if r.c.cfg.DeadLetters.Write(ctx, DeadLetter{Msg: m, Reason: err.Error()}) != nil {
				return // only ctx ends the retries
			}
			d.Done()
			continue
		}
		if routed.Weight == 0 {
			d.Done()
			continue
		}
		d.Value, d.Weight = routed.Value, routed.Weight
		if !r.enqueue(ctx, r.lane(ctx, sendCtx, routed.Lane), d) {
			return
		}
	}
}

// enqueue puts d in its lane, waiting while the lane is full; with an Overflow, a full lane
// that has stalled has d parked there instead. It says false when ctx ended first.
func (r *laneRunner[T]) enqueue(ctx context.Context, l *lane[T], d *Delivery[T]) bool {
	var look <-chan time.Time // how often a waiting message asks whether its lane stalled
	if r.cfg.Overflow != nil {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		look = t.C
	}
	for {
		select {
		case l.in <- d:
			l.queued.Inc()
			return true
		case <-ctx.Done():
			return false
		case <-look:
			if l.stalled(r.cfg.ParkAfter) {
				return r.park(ctx, l, d)
			}
		}
	}
}

// park writes d to the Overflow topic and marks it done here; the lane says so at most once
// a minute. False when ctx ended first.
func (r *laneRunner[T]) park(ctx context.Context, l *lane[T], d *Delivery[T]) bool {
	reason := "lane " + l.name + " was full (" + strconv.Itoa(r.cfg.QueueSize) + " waiting) and stalled"
	if r.cfg.Overflow.Write(ctx, DeadLetter{Msg: d.Msg, Reason: reason}) != nil {
		return false // only ctx ends the retries
	}
	d.Done()
	if l.parked++; time.Since(l.parkedSaid) >= time.Minute {
		r.c.logger.Warn("a lane is full and has stalled: its messages are parked, and the other lanes go on", "lane", l.name,
			"parked", l.parked, "topic", r.cfg.Overflow.Topic)
		l.parked, l.parkedSaid = 0, time.Now()
	}
	return true
}

// lane returns the lane of that name, starting it on its first message.
func (r *laneRunner[T]) lane(ctx, sendCtx context.Context, name string) *lane[T] {
	l := r.lanes[name]
	if l != nil {
		return l
	}
	l = &lane[T]{name: name, r: r, in: make(chan *Delivery[T], r.cfg.QueueSize), queued: prometheus.NewGauge(prometheus.GaugeOpts{})}
	if r.cfg.Queued != nil {
		l.queued = r.cfg.Queued.WithLabelValues(name)
	}
	l.progress.Store(time.Now().UnixNano())
	r.lanes[name] = l
	r.workers.Go(func() { l.run(ctx, sendCtx) })
	return l
}

// commitEvery commits done prefixes every CommitInterval until ctx ends.
func (r *laneRunner[T]) commitEvery(ctx context.Context, m *member) {
	t := time.NewTicker(r.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.commit(ctx, m)
		}
	}
}

func (r *laneRunner[T]) commit(ctx context.Context, m *member) {
	msgs := r.offsets.committable()
	// Done messages stay done; should the commit fail, the next one covers them, and at
	// worst they are handled again, which every handler allows.
	if m.commit(ctx, msgs) {
		r.offsets.committed(msgs)
	}
}

// lane is one lane's queue and the loop that forms its batches.
type lane[T any] struct {
	name   string
	r      *laneRunner[T]
	in     chan *Delivery[T]
	carry  *Delivery[T] // taken from in, but for the next batch: it would not fit this one
	queued prometheus.Gauge
	// parked counts the messages parked (LaneConfig.Overflow) since the last time the lane
	// said so, which it does at most once a minute.
	parked     int
	parkedSaid time.Time
	// progress is when the lane last finished a batch, or was made (unix nanoseconds).
	progress atomic.Int64
}

// stalled says whether the lane is full and has finished no batch for d.
func (l *lane[T]) stalled(d time.Duration) bool {
	return len(l.in) == cap(l.in) && time.Since(time.Unix(0, l.progress.Load())) >= d
}

// run forms batches and hands them to the handler, Workers at a time, until ctx ends; then
// waits for the batches under way, which run on sendCtx.
func (l *lane[T]) run(ctx, sendCtx context.Context) {
	h := l.r.h
	slots := make(chan struct{}, l.r.cfg.Workers)
	var handling sync.WaitGroup
	defer handling.Wait()
	for {
		// Take a slot, and wait until the lane is ready, before forming the batch: under a
		// backlog every batch is then a full one.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if h.Ready(ctx, l.name) != nil {
			return
		}
		batch := l.collect(ctx, h.MaxWeight(l.name))
		if len(batch) == 0 || ctx.Err() != nil {
			return // stopping: what was collected is not done, so the next owner handles it
		}
		handling.Go(func() {
			defer func() { <-slots }()
			h.Handle(ctx, sendCtx, l.name, batch)
			l.progress.Store(time.Now().UnixNano())
		})
	}
}

// collect waits for one delivery, then takes more until the batch weighs maxWeight or
// Linger has passed.
func (l *lane[T]) collect(ctx context.Context, maxWeight int) []*Delivery[T] {
	var batch []*Delivery[T]
	if l.carry != nil {
		batch, l.carry = append(batch, l.carry), nil
	} else {
		select {
		case d := <-l.in:
			l.queued.Dec()
			batch = append(batch, d)
		case <-ctx.Done():
			return nil
		}
	}
	linger := time.NewTimer(l.r.cfg.Linger)
	defer linger.Stop()
	for weight := batch[0].Weight; weight < maxWeight; {
		select {
		case d := <-l.in:
			l.queued.Dec()
			if weight+d.Weight > maxWeight {
				l.carry = d // one more would cost a batch of its own
				return batch
			}
			batch = append(batch, d)
			weight += d.Weight
		case <-linger.C:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}
