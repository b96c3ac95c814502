package kafka

import (
	"sort"
	"sync"
)

// offsets tracks which fetched messages are done, per partition, so that RunLanes can handle
// messages out of order (one connection's slow Klaviyo must not hold back another's) and
// still commit only a prefix of done messages: what is not committed is handled again after
// a restart, never skipped.
type offsets struct {
	topic string

	mu    sync.Mutex
	parts map[int]*partition
}

type partition struct {
	pending []entry // fetched, in offset order; pending[:head] are gone
	head    int
	commit  int64 // the last offset whose message and all before it are done; -1 for none
	sent    int64 // the last offset committed to Kafka
}

type entry struct {
	offset int64
	done   bool
}

func newOffsets(topic string) *offsets {
	return &offsets{topic: topic, parts: map[int]*partition{}}
}

// add records a fetched message. After a rebalance the reader may fetch again from an
// earlier offset: what was pending from there on is forgotten, and fetched anew.
func (o *offsets) add(m Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.parts[m.Partition]
	if p == nil {
		p = &partition{commit: -1, sent: -1}
		o.parts[m.Partition] = p
	}
	if n := len(p.pending); n > p.head && p.pending[n-1].offset >= m.Offset {
		i := p.find(m.Offset)
		p.pending = p.pending[:i]
	}
	if m.Offset <= p.commit {
		p.commit = m.Offset - 1
	}
	p.pending = append(p.pending, entry{offset: m.Offset})
}

// done marks a message handled (delivered, dead-lettered, or nothing to do).
func (o *offsets) done(m Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.parts[m.Partition]
	if p == nil {
		return
	}
	i := p.find(m.Offset)
	if i == len(p.pending) || p.pending[i].offset != m.Offset {
		return // forgotten by a rebalance: its new copy decides
	}
	p.pending[i].done = true
	for p.head < len(p.pending) && p.pending[p.head].done {
		p.commit = p.pending[p.head].offset
		p.head++
	}
	if p.head > 1024 && p.head*2 > len(p.pending) {
		p.pending = append([]entry(nil), p.pending[p.head:]...)
		p.head = 0
	}
}

// find returns the index of the first pending entry at or after offset.
func (p *partition) find(offset int64) int {
	return p.head + sort.Search(len(p.pending)-p.head, func(i int) bool { return p.pending[p.head+i].offset >= offset })
}

// committable returns, per partition that moved on, the last done message to commit.
func (o *offsets) committable() []Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Message
	for id, p := range o.parts {
		if p.commit > p.sent {
			out = append(out, Message{Topic: o.topic, Partition: id, Offset: p.commit})
		}
	}
	return out
}

// committed records that msgs were committed.
func (o *offsets) committed(msgs []Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range msgs {
		if p := o.parts[m.Partition]; p != nil && m.Offset > p.sent {
			p.sent = m.Offset
		}
	}
}

// inflight is the number of fetched messages not yet done.
func (o *offsets) inflight() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, p := range o.parts {
		for _, e := range p.pending[p.head:] {
			if !e.done {
				n++
			}
		}
	}
	return n
}
