package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

var (
	memMu     sync.Mutex
	memByName = map[string]*memData{}
)

type memData struct {
	mu      sync.RWMutex
	objects map[string][]byte
}

// Mem is an in-memory Storage. Objects are lost when the process exits.
// Safe for concurrent use.
type Mem struct {
	location string
	data     *memData
	closed   atomic.Bool
}

var _ Storage = (*Mem)(nil)

// NewMem returns an empty in-memory storage of its own.
func NewMem() *Mem {
	return &Mem{location: "mem://", data: &memData{objects: map[string][]byte{}}}
}

// OpenMem returns the in-memory storage registered under name, creating it
// on first use; every OpenMem of one name shares its objects.
func OpenMem(name string) *Mem {
	memMu.Lock()
	defer memMu.Unlock()
	d, ok := memByName[name]
	if !ok {
		d = &memData{objects: map[string][]byte{}}
		memByName[name] = d
	}
	return &Mem{location: "mem://" + name, data: d}
}

func (m *Mem) check(ctx context.Context) error {
	if m.closed.Load() {
		return fmt.Errorf("storage: %s: %w", m.location, ErrClosed)
	}
	return ctx.Err()
}

// Put implements Storage.
func (m *Mem) Put(ctx context.Context, name string, r io.Reader, opts PutOptions) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := m.check(ctx); err != nil {
		return err
	}
	data, err := io.ReadAll(ctxReader{ctx, r})
	if err != nil {
		return fmt.Errorf("storage: put %s: %w", name, err)
	}
	m.data.mu.Lock()
	defer m.data.mu.Unlock()
	if _, ok := m.data.objects[name]; ok && opts.IfAbsent {
		return fmt.Errorf("storage: put %s in %s: %w", name, m.location, ErrExists)
	}
	m.data.objects[name] = data
	return nil
}

// Get implements Storage.
func (m *Mem) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	m.data.mu.RLock()
	data, ok := m.data.objects[name]
	m.data.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("storage: get %s in %s: %w", name, m.location, ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// List implements Storage.
func (m *Mem) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	m.data.mu.RLock()
	var out []ObjectInfo
	for name, data := range m.data.objects {
		if strings.HasPrefix(name, prefix) {
			out = append(out, ObjectInfo{Name: name, Size: int64(len(data))})
		}
	}
	m.data.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete implements Storage.
func (m *Mem) Delete(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := m.check(ctx); err != nil {
		return err
	}
	m.data.mu.Lock()
	delete(m.data.objects, name)
	m.data.mu.Unlock()
	return nil
}

// Location implements Storage.
func (m *Mem) Location() string { return m.location }

// Close implements Storage: this handle's later operations fail with
// ErrClosed. The objects stay available to other handles of the same name.
func (m *Mem) Close() error {
	m.closed.Store(true)
	return nil
}

// Corrupt replaces the bytes of an existing object, bypassing atomic Put
// rules. It exists for tests that need a damaged object.
func (m *Mem) Corrupt(name string, mutate func([]byte) []byte) error {
	m.data.mu.Lock()
	defer m.data.mu.Unlock()
	data, ok := m.data.objects[name]
	if !ok {
		return fmt.Errorf("storage: corrupt %s: %w", name, ErrNotFound)
	}
	m.data.objects[name] = mutate(bytes.Clone(data))
	return nil
}
