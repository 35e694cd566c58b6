package stream

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// metaWriter is the one ordered writer of a query's metadata (offsets
// entries, commit entries, purges). Writes happen in submission order on
// one goroutine with a bounded queue, so a batch's commit entry can be in
// flight while the next batch is planned, and the next batch's offsets
// entry is never written before it. The first failed write stops the
// writer: every later write fails with its error (the query must restart
// and recover from what is durable).
type metaWriter struct {
	ch     chan metaOp
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	logger *slog.Logger

	mu  sync.Mutex
	err error
}

type metaOp struct {
	what string
	fn   func(ctx context.Context) error
	done chan error
}

const metaQueue = 8

func newMetaWriter(logger *slog.Logger) *metaWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &metaWriter{ch: make(chan metaOp, metaQueue), ctx: ctx, cancel: cancel, done: make(chan struct{}), logger: logger}
	go w.run()
	return w
}

func (w *metaWriter) run() {
	defer close(w.done)
	for op := range w.ch {
		w.mu.Lock()
		err := w.err
		w.mu.Unlock()
		if err == nil {
			if err = op.fn(w.ctx); err != nil {
				err = fmt.Errorf("stream: %s: %w", op.what, err)
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
		op.done <- err
	}
}

// submit queues a write and returns where its result will arrive. When
// the queue is not empty (checkpointing is behind the batches), it warns.
func (w *metaWriter) submit(what string, fn func(ctx context.Context) error) <-chan error {
	done := make(chan error, 1)
	if depth := len(w.ch); depth > 0 {
		w.logger.Warn("stream: checkpoint metadata writes are falling behind the batches", "queued", depth, "next", what)
	}
	w.ch <- metaOp{what, fn, done}
	return done
}

// failed returns the error that stopped the writer, if any.
func (w *metaWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// depth returns the number of queued writes: a metric of how far
// checkpointing is behind.
func (w *metaWriter) depth() int { return len(w.ch) }

// flush waits until every submitted write is done and returns the first
// error of the writer.
func (w *metaWriter) flush() error {
	return <-w.submit("flush", func(context.Context) error { return nil })
}

// close flushes, then stops the writer.
func (w *metaWriter) close() error {
	err := w.flush()
	close(w.ch)
	<-w.done
	w.cancel()
	return err
}
