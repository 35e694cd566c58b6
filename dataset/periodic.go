package dataset

import (
	"context"
	"fmt"
)

// PeriodicCheckpointer checkpoints the dataset of an iterative job every N
// iterations and deletes the previous checkpoint once the next one is
// written, as MLlib's PeriodicCheckpointer does, so that the lineage stays
// short and at most one checkpoint's files are kept.
//
// It never deletes the checkpoint that the dataset it last returned reads:
// only an older one, after its replacement is complete. Not safe for
// concurrent use.
type PeriodicCheckpointer[T any] struct {
	every     int
	iteration int
	current   *Dataset[T] // the newest checkpoint
}

// NewPeriodicCheckpointer checkpoints every `every` iterations (Spark MLlib:
// checkpointInterval).
func NewPeriodicCheckpointer[T any](every int) (*PeriodicCheckpointer[T], error) {
	if every <= 0 {
		return nil, fmt.Errorf("dataset: PeriodicCheckpointer interval is %d; it must be positive", every)
	}
	return &PeriodicCheckpointer[T]{every: every}, nil
}

// Update is called once per iteration with the iteration's dataset. Every
// N-th call it writes an eager checkpoint of d, deletes the previous one,
// and returns the checkpointed dataset; otherwise it returns d.
func (p *PeriodicCheckpointer[T]) Update(ctx context.Context, d *Dataset[T]) (*Dataset[T], error) {
	p.iteration++
	if p.iteration%p.every != 0 {
		return d, nil
	}
	c, err := d.Checkpoint(ctx, true)
	if err != nil {
		return nil, err
	}
	prev := p.current
	p.current = c
	if prev != nil {
		if err := prev.deleteCheckpoint(ctx); err != nil {
			return nil, fmt.Errorf("dataset: delete the previous checkpoint %s: %w", prev.CheckpointLocation(), err)
		}
	}
	return c, nil
}

// Current returns the newest checkpoint, or nil before the first.
func (p *PeriodicCheckpointer[T]) Current() *Dataset[T] { return p.current }

// deleteCheckpoint deletes the files of a reliable checkpoint now; later
// actions on it fail with a clear error.
func (d *Dataset[T]) deleteCheckpoint(ctx context.Context) error {
	c, ok := d.ckpt.(*reliable[T])
	if !ok {
		return nil
	}
	c.mu.Lock()
	c.deleted = true
	c.mu.Unlock()
	return deleteCheckpoint(ctx, c.st, c.dir)
}
