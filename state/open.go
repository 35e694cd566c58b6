package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"sync"
	"time"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

var (
	registryMu sync.RWMutex
	registry   = map[string]func() Provider{}
)

// Register makes a provider available to Open by name. It panics if the
// name is registered twice.
func Register(name string, factory func() Provider) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("state: Register called twice for provider " + name)
	}
	registry[name] = factory
}

// Providers lists the registered provider names, sorted.
func Providers() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// metaVersion is the format version of the store metadata object.
// Version 1: JSON {provider, schema, created}. Version 2 adds the store's
// "uid" and records the object's name as its frame identity.
const metaVersion = 2

// MetaObject is the name of the object, in a store's dir, that records the
// provider and schema the store was created with.
const MetaObject = "_meta"

// Meta is what a store records at first use.
type Meta struct {
	Provider string    `json:"provider"`
	Schema   Schema    `json:"schema"`
	Created  time.Time `json:"created"`
	// UID is a random ID given to the store at creation, which its
	// providers record in every object they write (ObjectIdentity), so
	// that an object of another store (another partition, operator or
	// checkpoint location) copied into this one is refused. Stores
	// created before UIDs existed have none.
	UID string `json:"uid,omitempty"`
}

// ObjectIdentity returns the identity a provider records in, and expects
// of, the object name of this store (see internal/frame): the name, then
// " store=<UID>" when the store has a UID. The name is relative to the
// checkpoint location, e.g. "state/0/1/25.delta".
func (m Meta) ObjectIdentity(name string) string {
	if m.UID == "" {
		return name
	}
	return name + " store=" + m.UID
}

// newUID returns a random store UID: 8 bytes, in hex. It tells apart the
// stores an object could have been copied from, a handful, not every store
// there is; and it is in every object a store writes.
func newUID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ReadMeta reads the metadata of the store id, or returns an error
// matching storage.ErrNotFound if the store was never created.
func ReadMeta(ctx context.Context, s storage.Storage, id StoreID) (Meta, error) {
	return readMetaIn(ctx, s, id.Dir())
}

// CheckObjectIdentity checks the identity an object of a store records
// (recorded, "" for an object written before identities) against the one
// its name and its store call for (Meta.ObjectIdentity), for tools that
// read one object outside a provider, such as a verifier. object must lie
// directly in the store's directory, next to its _meta. When that _meta
// cannot be read, the store's UID is unknown and only the name is checked.
// A mismatch is a *storage.CorruptError naming the object.
func CheckObjectIdentity(ctx context.Context, s storage.Storage, object, recorded string) error {
	if recorded == "" {
		return nil
	}
	want := object
	if meta, err := readMetaIn(ctx, s, path.Dir(object)); err == nil {
		want = meta.ObjectIdentity(object)
	} else if frame.Identity(recorded).Name() == object {
		return nil
	}
	return frame.CheckIdentity(object, frame.Identity(recorded), frame.Identity(want))
}

func readMetaIn(ctx context.Context, s storage.Storage, dir string) (Meta, error) {
	name := dir + "/" + MetaObject
	payload, _, err := frame.GetBytes(ctx, s, name, frame.KindStoreMeta, metaVersion, frame.Identity(name))
	if err != nil {
		return Meta{}, err
	}
	var m Meta
	if err := json.Unmarshal(payload, &m); err != nil {
		return Meta{}, &storage.CorruptError{Object: name, Offset: -1, Reason: "metadata is not valid JSON: " + err.Error()}
	}
	return m, nil
}

// Open opens the state store id with the named provider. At the first Open
// of a store it records the provider and schema; later Opens with another
// provider or schema are refused with a *ConfigError naming old and new
// values. Unless opts.MaintenanceInterval is negative, a goroutine runs
// Maintain periodically until Close.
func Open(ctx context.Context, provider string, s storage.Storage, id StoreID, schema Schema, opts Options) (Provider, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.WithDefaults()
	registryMu.RLock()
	factory, ok := registry[provider]
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("state: no provider named %q (registered: %v); import its package, e.g. _ \"github.com/cairn-data/cairn/state/memstate\"", provider, Providers())
	}
	if err := checkMeta(ctx, s, id, Meta{Provider: provider, Schema: schema, Created: time.Now().UTC(), UID: newUID()}); err != nil {
		return nil, err
	}
	p := factory()
	if err := p.Init(ctx, s, id.Dir(), id, schema, opts); err != nil {
		return nil, fmt.Errorf("state: open %s with provider %s: %w", id, provider, err)
	}
	m := &managed{Provider: p, id: id, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if opts.MaintenanceInterval > 0 {
		go m.loop()
	} else {
		close(m.done)
	}
	return m, nil
}

func checkMeta(ctx context.Context, s storage.Storage, id StoreID, want Meta) error {
	got, err := ReadMeta(ctx, s, id)
	if errors.Is(err, storage.ErrNotFound) {
		payload, _ := json.Marshal(want)
		name := id.Dir() + "/" + MetaObject
		err = frame.PutBytes(ctx, s, name, frame.KindStoreMeta, metaVersion, payload, storage.PutOptions{IfAbsent: true}, frame.Identity(name))
		if err == nil {
			return nil
		}
		if !errors.Is(err, storage.ErrExists) {
			return fmt.Errorf("state: record metadata of %s: %w", id, err)
		}
		got, err = ReadMeta(ctx, s, id) // created concurrently: check against it
	}
	if err != nil {
		return fmt.Errorf("state: read metadata of %s: %w", id, err)
	}
	switch {
	case got.Provider != want.Provider:
		return &ConfigError{Store: id.Dir(), Setting: "provider", Old: got.Provider, New: want.Provider}
	case got.Schema.Key != want.Schema.Key:
		return &ConfigError{Store: id.Dir(), Setting: "key schema", Old: got.Schema.Key, New: want.Schema.Key}
	case got.Schema.Value != want.Schema.Value:
		return &ConfigError{Store: id.Dir(), Setting: "value schema", Old: got.Schema.Value, New: want.Schema.Value}
	}
	return nil
}

// MaintenanceRequester is an optional interface of a Provider: a provider
// that wants maintenance sooner than the interval (say, because enough
// deltas piled up for a snapshot) signals on the channel.
type MaintenanceRequester interface {
	MaintenanceRequests() <-chan struct{}
}

// managed wraps a provider with the maintenance goroutine.
type managed struct {
	Provider
	id        StoreID
	opts      Options
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (m *managed) loop() {
	defer close(m.done)
	t := time.NewTicker(m.opts.MaintenanceInterval)
	defer t.Stop()
	var kick <-chan struct{}
	if r, ok := m.Provider.(MaintenanceRequester); ok {
		kick = r.MaintenanceRequests()
	}
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		case <-kick:
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-m.stop:
			case <-ctx.Done():
			}
			cancel()
		}()
		if err := m.Provider.Maintain(ctx); err != nil && ctx.Err() == nil {
			m.opts.Logger.Warn("state store maintenance failed; it will be retried", "store", m.id.Dir(), "err", err)
		}
		cancel()
	}
}

// Close stops maintenance, then closes the provider.
func (m *managed) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.stop)
		<-m.done
		err = m.Provider.Close()
	})
	return err
}
