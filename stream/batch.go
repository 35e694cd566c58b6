package stream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

// Batch is one micro-batch as its plan sees it: its ID, and what stateful
// operators need.
type Batch struct {
	ID         int64
	partitions int
	dryRun     bool // planning only, to learn the operators
	stores     *stores
	ops        []OperatorInfo

	commitNanos atomic.Int64 // time spent committing state stores, summed over partitions
	watermark   int64        // Unix ms; records before it are late
	timestamp   int64        // the batch's processing time, Unix ms, from its offsets entry
	keepAside   bool         // Options.LateRows is set: keep the records operators set aside

	mu        sync.Mutex
	committed map[storeKey]state.Metrics // stores committed by this batch
	release   []func()                   // run when the batch ends
	maxEvent  map[int64]*atomic.Int64    // greatest event time seen, by operator (set at register)
	aside     map[asideKey]*aside        // late and bad rows, by operator and partition
}

// end releases what the batch kept in memory.
func (b *Batch) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.release {
		f()
	}
	b.release = nil
}

func (b *Batch) register(op OperatorInfo) error {
	for _, o := range b.ops {
		if o.ID == op.ID {
			return fmt.Errorf("stream: two stateful operators have ID %d; give each its own", op.ID)
		}
	}
	b.ops = append(b.ops, op)
	if op.WatermarkDelay != nil {
		if b.maxEvent == nil {
			b.maxEvent = map[int64]*atomic.Int64{}
		}
		m := &atomic.Int64{}
		m.Store(math.MinInt64) // nothing seen yet
		b.maxEvent[op.ID] = m
	}
	return nil
}

// checkCommitted verifies that every stateful operator committed its
// store in every partition: the batch's commit entry promises it.
func (b *Batch) checkCommitted() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, op := range b.ops {
		if op.Kind == watermarkKind {
			continue // no state
		}
		for p := range b.partitions {
			if _, ok := b.committed[storeKey{op.ID, p}]; !ok {
				return fmt.Errorf("stream: batch %d: the sink did not compute every partition of stateful operator %d (partition %d is missing); a sink must consume the whole batch", b.ID, op.ID, p)
			}
		}
	}
	return nil
}

func (b *Batch) markCommitted(k storeKey, m state.Metrics) {
	b.mu.Lock()
	if b.committed == nil {
		b.committed = map[storeKey]state.Metrics{}
	}
	b.committed[k] = m
	b.mu.Unlock()
}

type storeKey struct {
	op   int64
	part int
}

// stores keeps the state providers of a query open across batches.
type stores struct {
	st       storage.Storage
	provider string
	retain   int
	mu       sync.Mutex
	open     map[storeKey]state.Provider
}

func (s *stores) get(ctx context.Context, k storeKey, schema state.Schema) (state.Provider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.open[k]; ok {
		return p, nil
	}
	p, err := state.Open(ctx, s.provider, s.st, state.StoreID{Operator: k.op, Partition: int32(k.part)}, schema,
		state.Options{RetainVersions: s.retain})
	if err != nil {
		return nil, err
	}
	s.open[k] = p
	return p, nil
}

func (s *stores) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, p := range s.open {
		errs = append(errs, p.Close())
	}
	s.open = map[storeKey]state.Provider{}
	return errors.Join(errs...)
}
