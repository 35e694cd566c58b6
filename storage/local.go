package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// tmpDir holds objects being written by the local backend. Its name uses
// the reserved ".cairn-" prefix, so it can never collide with an object and
// List never shows it.
const tmpDir = ".cairn-tmp"

// staleTempAge is how old a temporary file must be before OpenLocal removes
// it as the leftover of a crashed writer.
const staleTempAge = time.Hour

// Local is a Storage in a local directory. Put writes a temporary file,
// fsyncs it, moves it into place (rename, or link for IfAbsent so that an
// existing object is never replaced) and fsyncs the directory, so an object
// is whole or absent after a crash. Safe for concurrent use.
type Local struct {
	root   string
	closed atomic.Bool
}

var _ Storage = (*Local)(nil)

// OpenLocal opens (creating if needed) a directory as storage and removes
// temporary files more than an hour old left by crashed writers.
func OpenLocal(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", dir, err)
	}
	if err := mkdirAllSync(filepath.Join(abs, tmpDir)); err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", abs, err)
	}
	l := &Local{root: abs}
	l.removeStaleTemps()
	return l, nil
}

// Root returns the absolute directory.
func (l *Local) Root() string { return l.root }

func (l *Local) removeStaleTemps() {
	entries, err := os.ReadDir(filepath.Join(l.root, tmpDir))
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTempAge {
			os.Remove(filepath.Join(l.root, tmpDir, e.Name()))
		}
	}
}

func (l *Local) check(ctx context.Context) error {
	if l.closed.Load() {
		return fmt.Errorf("storage: %s: %w", l.root, ErrClosed)
	}
	return ctx.Err()
}

func (l *Local) path(name string) string {
	return filepath.Join(l.root, filepath.FromSlash(name))
}

// Put implements Storage.
func (l *Local) Put(ctx context.Context, name string, r io.Reader, opts PutOptions) (err error) {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := l.check(ctx); err != nil {
		return err
	}
	tmp, err := createTemp(filepath.Join(l.root, tmpDir), "put-")
	if err != nil {
		return fmt.Errorf("storage: put %s: create temporary file: %w", name, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		os.Remove(tmpName) // after rename this is a no-op; after link it drops the temp name
	}()
	if _, err := io.Copy(tmp, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("storage: put %s: write %s: %w", name, tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("storage: put %s: fsync %s: %w", name, tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("storage: put %s: close %s: %w", name, tmpName, err)
	}
	tmp = nil
	final := l.path(name)
	dir := filepath.Dir(final)
	if err := mkdirAllSync(dir); err != nil {
		return fmt.Errorf("storage: put %s: %w", name, err)
	}
	if opts.IfAbsent {
		// link fails with EEXIST when the name is taken: an atomic
		// create-if-absent that rename does not give.
		if err := os.Link(tmpName, final); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("storage: put %s in %s: %w", name, l.root, ErrExists)
			}
			return fmt.Errorf("storage: put %s: link into place: %w", name, err)
		}
	} else if err := os.Rename(tmpName, final); err != nil {
		return fmt.Errorf("storage: put %s: rename into place: %w", name, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("storage: put %s: fsync directory: %w", name, err)
	}
	return nil
}

// Get implements Storage.
func (l *Local) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := l.check(ctx); err != nil {
		return nil, err
	}
	f, err := os.Open(l.path(name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("storage: get %s in %s: %w", name, l.root, ErrNotFound)
		}
		return nil, fmt.Errorf("storage: get %s: %w", name, err)
	}
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("storage: get %s in %s: %w (it is a directory)", name, l.root, ErrNotFound)
	}
	return f, nil
}

// List implements Storage.
func (l *Local) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if err := l.check(ctx); err != nil {
		return nil, err
	}
	// Walk only the deepest directory the prefix names in full.
	start := l.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = l.path(prefix[:i])
	}
	var out []ObjectInfo
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil // a directory removed while walking, or a prefix with no objects
			}
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".cairn-") {
				return fs.SkipDir // ours, or a nested location's: never object names
			}
			return nil
		}
		rel, err := filepath.Rel(l.root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while listing
			}
			return err
		}
		out = append(out, ObjectInfo{Name: name, Size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list %q in %s: %w", prefix, l.root, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete implements Storage.
func (l *Local) Delete(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := l.check(ctx); err != nil {
		return err
	}
	p := l.path(name)
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("storage: delete %s: %w", name, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("storage: delete %s: fsync directory: %w", name, err)
	}
	return nil
}

// Location implements Storage.
func (l *Local) Location() string { return "file://" + filepath.ToSlash(l.root) }

// Close implements Storage: later operations fail with ErrClosed.
func (l *Local) Close() error {
	l.closed.Store(true)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// mkdirAllSync creates dir and missing parents, fsyncing the parent of each
// directory it creates so the new entries survive a crash.
func mkdirAllSync(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o777); err != nil && !errors.Is(err, fs.ErrExist) { // less the umask, as mkdir(1)
		return err
	}
	return syncDir(parent)
}

// createTemp creates a new file in dir for writing, as os.CreateTemp does,
// but with mode 0666 less the process's umask instead of 0600: objects are
// renamed into place as they are, and published output (sink parts,
// manifests, pipeline outputs) must be as readable as any file the user's
// programs write (0644 under umask 022).
func createTemp(dir, prefix string) (*os.File, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) && try < 100 {
			continue
		}
		return f, err
	}
}
