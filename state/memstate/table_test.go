package memstate

import (
	"fmt"
	"testing"
)

// The indexer applies part of a batch; whatever needs order then applies
// the rest. Found by the Nexmark benchmark: lb.pos+math.MaxInt overflowed.
func TestPartialThenFullIndexSync(t *testing.T) {
	tb := newTable(0, true)
	batch := make([]change, 10_000)
	for i := range batch {
		batch[i] = change{key: fmt.Sprintf("k%05d", (i*7919)%10_000), val: []byte{byte(i)}}
	}
	tb.bytes += tb.applyToMap(batch, nil)
	tb.addLag(batch)
	if !tb.syncSome(4096) || len(tb.lag) != 1 {
		t.Fatal("a partial sync did not keep the rest of the batch queued")
	}
	tb.syncIndex()
	if len(tb.lag) != 0 || tb.lagLen != 0 || tb.t.Len() != 10_000 {
		t.Fatalf("after a full sync: %d batches queued, %d changes, index of %d keys; want 0, 0, 10000", len(tb.lag), tb.lagLen, tb.t.Len())
	}
	prev := ""
	tb.t.Scan(func(e entry) bool {
		if e.key <= prev {
			t.Fatalf("index out of order at %q", e.key)
		}
		prev = e.key
		return true
	})
}
