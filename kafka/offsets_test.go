package kafka

import "testing"

func TestOffsetsCommitOnlyDonePrefixes(t *testing.T) {
	o := newOffsets("t")
	msg := func(p int, off int64) Message { return Message{Topic: "t", Partition: p, Offset: off} }
	for off := int64(10); off < 15; off++ {
		o.add(msg(0, off))
	}
	o.add(msg(1, 3))
	o.done(msg(0, 11))
	o.done(msg(0, 12))
	if c := o.committable(); len(c) != 0 {
		t.Fatalf("committable %v before the first message is done", c)
	}
	o.done(msg(0, 10))
	o.done(msg(1, 3))
	got := map[int]int64{}
	for _, m := range o.committable() {
		got[m.Partition] = m.Offset
	}
	if got[0] != 12 || got[1] != 3 || len(got) != 2 {
		t.Fatalf("committable %v, want partition 0 up to 12 and 1 up to 3", got)
	}
	o.committed(o.committable())
	if c := o.committable(); len(c) != 0 {
		t.Fatalf("committable %v after committing", c)
	}
	// A rebalance makes the reader fetch 13 and 14 again: the old copies no longer count.
	o.add(msg(0, 13))
	o.done(msg(0, 14)) // not fetched again yet: ignored
	o.add(msg(0, 14))
	if n := o.inflight(); n != 2 {
		t.Fatalf("inflight %d, want 2", n)
	}
	o.done(msg(0, 13))
	o.done(msg(0, 14))
	if c := o.committable(); len(c) != 1 || c[0].Offset != 14 {
		t.Fatalf("committable %v, want partition 0 up to 14", c)
	}
}
