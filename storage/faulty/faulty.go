package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cairn-data/cairn/storage"
)

// Errors returned for injected faults.
var (
	ErrInjected = errors.New("faulty: injected failure")
	ErrCrashed  = errors.New("faulty: storage crashed (simulated process death)")
)

// Kind is the kind of a storage operation.
type Kind int

// Operation kinds.
const (
	Put Kind = iota + 1
	Get
	List
	Delete
)

func (k Kind) String() string {
	switch k {
	case Put:
		return "put"
	case Get:
		return "get"
	case List:
		return "list"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Op describes one operation, for predicates.
type Op struct {
	Kind     Kind
	Name     string // object name, or the prefix for List
	IfAbsent bool   // for Put
}

// Match selects operations. A nil Match matches every operation.
type Match func(Op) bool

// Writes matches Put and Delete: the operations that change storage.
func Writes(op Op) bool { return op.Kind == Put || op.Kind == Delete }

// Storage injects faults into the operations of an inner Storage. Safe for
// concurrent use, but counting is only deterministic for a workload that
// issues its operations in a deterministic order.
type Storage struct {
	inner storage.Storage

	mu      sync.Mutex
	ops     int // every operation seen
	stats   Stats
	fail    rule
	crash   rule
	crashed bool
	// PutLandsOnCrash decides whether the Put at the crash point is stored
	// (whole) before the crash takes effect. Set it before the workload.
	PutLandsOnCrash bool
}

type rule struct {
	k, seen int
	match   Match
}

// hit counts op against the rule and reports whether this is the k-th match.
func (r *rule) hit(op Op) bool {
	if r.k <= 0 || (r.match != nil && !r.match(op)) {
		return false
	}
	r.seen++
	return r.seen == r.k
}

var _ storage.Storage = (*Storage)(nil)

// New wraps inner. Without FailAt or CrashAt it only counts operations.
func New(inner storage.Storage) *Storage { return &Storage{inner: inner} }

// FailAt arms a one-off failure of the k-th operation that match accepts.
func (s *Storage) FailAt(k int, match Match) {
	s.mu.Lock()
	s.fail = rule{k: k, match: match}
	s.mu.Unlock()
}

// CrashAt arms a crash at the k-th operation that match accepts.
func (s *Storage) CrashAt(k int, match Match) {
	s.mu.Lock()
	s.crash = rule{k: k, match: match}
	s.mu.Unlock()
}

// Crash makes every later operation fail, as if the process had died now.
func (s *Storage) Crash() {
	s.mu.Lock()
	s.crashed = true
	s.mu.Unlock()
}

// Crashed reports whether the simulated crash has happened.
func (s *Storage) Crashed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.crashed
}

// Ops returns the number of operations issued so far, failed ones included.
func (s *Storage) Ops() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ops
}

// Inner returns the wrapped storage, for a "restarted process" to reopen.
func (s *Storage) Inner() storage.Storage { return s.inner }

type verdict int

const (
	proceed verdict = iota
	failNow
	crashNow
)

func (s *Storage) check(op Op) (verdict, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops++
	switch op.Kind {
	case Put:
		s.stats.Puts++
	case Get:
		s.stats.Gets++
	case List:
		s.stats.Lists++
	case Delete:
		s.stats.Deletes++
	}
	if s.crashed {
		return failNow, fmt.Errorf("%s %s: %w", op.Kind, op.Name, ErrCrashed)
	}
	if s.crash.hit(op) {
		s.crashed = true
		return crashNow, fmt.Errorf("%s %s (operation %d): %w", op.Kind, op.Name, s.ops, ErrCrashed)
	}
	if s.fail.hit(op) {
		return failNow, fmt.Errorf("%s %s (operation %d): %w", op.Kind, op.Name, s.ops, ErrInjected)
	}
	return proceed, nil
}

// Put implements storage.Storage.
func (s *Storage) Put(ctx context.Context, name string, r io.Reader, opts storage.PutOptions) error {
	v, err := s.check(Op{Kind: Put, Name: name, IfAbsent: opts.IfAbsent})
	switch {
	case v == crashNow && s.PutLandsOnCrash:
		s.inner.Put(ctx, name, r, opts) // lands whole (or fails whole); the caller sees the crash
		return err
	case v != proceed:
		io.Copy(io.Discard, r) // a writer on the other end of a pipe must not block
		return err
	}
	return s.inner.Put(ctx, name, &countingReader{r: r, s: s, put: true}, opts)
}

// Get implements storage.Storage.
func (s *Storage) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if _, err := s.check(Op{Kind: Get, Name: name}); err != nil {
		return nil, err
	}
	rc, err := s.inner.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&countingReader{r: rc, s: s}, rc}, nil
}

// Stats counts the operations a Storage passed on, by kind, and the bytes
// they moved: for measuring what a workload asks of its storage.
type Stats struct {
	Puts, Gets, Lists, Deletes int   // operations issued, failed ones included
	PutBytes, GetBytes         int64 // bytes passed to the inner storage and read from it
}

// Stats returns the counts so far.
func (s *Storage) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// countingReader adds what passes through it to the storage's byte counts.
type countingReader struct {
	r   io.Reader
	s   *Storage
	put bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.s.mu.Lock()
	if c.put {
		c.s.stats.PutBytes += int64(n)
	} else {
		c.s.stats.GetBytes += int64(n)
	}
	c.s.mu.Unlock()
	return n, err
}

// List implements storage.Storage.
func (s *Storage) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	if _, err := s.check(Op{Kind: List, Name: prefix}); err != nil {
		return nil, err
	}
	return s.inner.List(ctx, prefix)
}

// Delete implements storage.Storage.
func (s *Storage) Delete(ctx context.Context, name string) error {
	v, err := s.check(Op{Kind: Delete, Name: name})
	if v == crashNow && s.PutLandsOnCrash {
		s.inner.Delete(ctx, name)
	}
	if err != nil {
		return err
	}
	return s.inner.Delete(ctx, name)
}

// Location implements storage.Storage.
func (s *Storage) Location() string { return s.inner.Location() }

// Close implements storage.Storage; it closes the inner storage.
func (s *Storage) Close() error { return s.inner.Close() }
