package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Opener opens a Storage for a parsed URL. Backends register one per scheme.
type Opener func(ctx context.Context, u *url.URL) (Storage, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// Register makes a backend available to Open under a URL scheme. It panics
// if the scheme is registered twice, like database/sql.Register.
func Register(scheme string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[scheme]; dup {
		panic("storage: Register called twice for scheme " + scheme)
	}
	registry[scheme] = open
}

func init() {
	Register("file", func(ctx context.Context, u *url.URL) (Storage, error) {
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("storage: file URL %q names host %q; use file:///absolute/path", u.String(), u.Host)
		}
		return OpenLocal(u.Path)
	})
	Register("mem", func(ctx context.Context, u *url.URL) (Storage, error) {
		name := u.Host + u.Path
		if name == "" {
			return nil, fmt.Errorf("storage: mem URL %q needs a name, as in mem://name", u.String())
		}
		return OpenMem(name), nil
	})
}

// Open opens checkpoint storage by URL: "file:///abs/path", a plain
// filesystem path (relative or absolute), or "mem://name" (in-process,
// shared by every Open of the same name, lost when the process exits).
// Other schemes are available once their backend is registered.
func Open(ctx context.Context, location string) (Storage, error) {
	if location == "" {
		return nil, fmt.Errorf("storage: empty location; give a path, file:///path or mem://name")
	}
	scheme, _, hasScheme := strings.Cut(location, "://")
	if !hasScheme || filepath.VolumeName(location) != "" {
		return OpenLocal(location)
	}
	u, err := url.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("storage: parse location %q: %w", location, err)
	}
	registryMu.RLock()
	open, ok := registry[scheme]
	registryMu.RUnlock()
	if !ok {
		if pkg, ok := backendPackages[scheme]; ok {
			return nil, fmt.Errorf("storage: no backend for scheme %q in %q: import its package in your program, as in import _ %q (registered now: %s)", scheme, location, pkg, strings.Join(Schemes(), ", "))
		}
		return nil, fmt.Errorf("storage: no backend for scheme %q in %q (registered: %s)", scheme, location, strings.Join(Schemes(), ", "))
	}
	return open(ctx, u)
}

// backendPackages names the package of each backend cairn ships that is
// not linked in by default, so that a URL of a scheme whose package was not
// imported gets an error that says which import is missing.
var backendPackages = map[string]string{
	"s3": "github.com/cairn-data/cairn/storage/s3",
}

// Schemes lists the registered URL schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for s := range registry {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// OpenExisting is Open for readers and tools: where Open creates a local
// directory that is missing, OpenExisting returns an error matching
// ErrNotFound, so that a mistyped path is reported instead of read as an
// empty location. Other schemes open as with Open.
func OpenExisting(ctx context.Context, location string) (Storage, error) {
	dir := ""
	if !strings.Contains(location, "://") {
		dir = location
	} else if strings.HasPrefix(location, "file://") {
		if u, err := url.Parse(location); err == nil {
			dir = u.Path
		}
	}
	if dir != "" {
		fi, err := os.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("storage: %s does not exist: %w", location, ErrNotFound)
		case err != nil:
			return nil, fmt.Errorf("storage: open %s: %w", location, err)
		case !fi.IsDir():
			return nil, fmt.Errorf("storage: %s is a file, not a directory", location)
		}
	}
	return Open(ctx, location)
}
