package pebblestate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// failedPause is how long an operation that writes to a failed disk waits
// before it returns the failure: Pebble retries a failed flush at once and
// forever, and this keeps that loop (until Close) to a few tries a second.
const failedPause = 100 * time.Millisecond

// diskFS is the file system of a provider's Pebble databases: the real one
// (or a test's) with failure tracking. The first write to the disk that
// fails because the disk is full or broken (ENOSPC, EDQUOT, EIO, EROFS),
// and the first fatal error Pebble reports, fail the provider for good:
// from then on every operation that would write returns that error, after
// failedPause, without touching the disk, so that a database Pebble can no
// longer run writes nothing more, and the provider's calls return the error
// at once. Reads pass through.
type diskFS struct {
	vfs.FS
	dir string // the working directory, named in errors

	mu      sync.Mutex
	failure error         // the first failure; guarded by mu
	failed  chan struct{} // closed at the first failure
	wakeCh  chan struct{} // closed by wake to end the current pauses
	locks   map[string]*fsLock
}

func newDiskFS(inner vfs.FS, dir string) *diskFS {
	if inner == nil {
		inner = vfs.Default
	}
	return &diskFS{FS: inner, dir: dir, failed: make(chan struct{}), wakeCh: make(chan struct{}), locks: map[string]*fsLock{}}
}

// diskFailure is the error of a failed working directory. It wraps the
// underlying error (a *os.PathError over syscall.ENOSPC for a full disk).
type diskFailure struct {
	dir string
	err error
}

func (e *diskFailure) Error() string {
	what := "the disk of the local working directory %s failed"
	if isDiskFull(e.err) {
		what = "the disk of the local working directory %s is full"
	}
	return fmt.Sprintf("pebblestate: "+what+" (%v); the provider has stopped and every call returns this error: "+
		"free space there or set pebblestate.Options.Dir to another disk, then restart the job (close the provider and open it again): "+
		"the store resumes from checkpoint storage, which holds every committed version", e.dir, e.err)
}

func (e *diskFailure) Unwrap() error { return e.err }

// isDiskFull reports whether err says the disk or the user's quota is full.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// isDiskFailure reports whether a write error means that the disk cannot
// take more writes: it is full, read-only or broken.
func isDiskFailure(err error) bool {
	return isDiskFull(err) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EROFS)
}

// err returns the failure, or nil while the disk works.
func (fs *diskFS) err() error {
	select {
	case <-fs.failed:
	default:
		return nil
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.failure
}

// fail records err as the failure if it is the first.
func (fs *diskFS) fail(err error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.failure == nil {
		fs.failure = &diskFailure{dir: fs.dir, err: err}
		close(fs.failed)
	}
}

// check records a write error that means a failed disk.
func (fs *diskFS) check(err error) error {
	if err != nil && isDiskFailure(err) {
		fs.fail(err)
	}
	return err
}

// refuse returns the failure, after failedPause (or until wake), when the
// disk failed; nil otherwise.
func (fs *diskFS) refuse() error {
	err := fs.err()
	if err == nil {
		return nil
	}
	fs.mu.Lock()
	wake := fs.wakeCh
	fs.mu.Unlock()
	t := time.NewTimer(failedPause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-wake:
	}
	return err
}

// wake ends the pauses in progress (Close is waiting for Pebble's
// background work to give up).
func (fs *diskFS) wake() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	close(fs.wakeCh)
	fs.wakeCh = make(chan struct{})
}

func (fs *diskFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.refuse(); err != nil {
		return nil, err
	}
	f, err := fs.FS.Create(name, category)
	return fs.wrap(f, fs.check(err))
}

func (fs *diskFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	if err := fs.refuse(); err != nil {
		return nil, err
	}
	f, err := fs.FS.OpenReadWrite(name, category, opts...)
	return fs.wrap(f, fs.check(err))
}

func (fs *diskFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.refuse(); err != nil {
		return nil, err
	}
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(f, fs.check(err))
}

func (fs *diskFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	return fs.wrap(f, err) // its Sync is checked
}

func (fs *diskFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &diskFile{File: f, fs: fs}, nil
}

func (fs *diskFS) Link(oldname, newname string) error {
	if err := fs.refuse(); err != nil {
		return err
	}
	return fs.check(fs.FS.Link(oldname, newname))
}

func (fs *diskFS) Remove(name string) error {
	if err := fs.refuse(); err != nil {
		return err
	}
	return fs.check(fs.FS.Remove(name))
}

func (fs *diskFS) RemoveAll(name string) error {
	if err := fs.refuse(); err != nil {
		return err
	}
	return fs.check(fs.FS.RemoveAll(name))
}

func (fs *diskFS) Rename(oldname, newname string) error {
	if err := fs.refuse(); err != nil {
		return err
	}
	return fs.check(fs.FS.Rename(oldname, newname))
}

func (fs *diskFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := fs.refuse(); err != nil {
		return err
	}
	return fs.check(fs.FS.MkdirAll(dir, perm))
}

// Lock takes the lock of a database (its LOCK file) and keeps it, so that
// the lock of a database Pebble stopped in a fatal error can be released
// (release): the disk has failed, so that database writes nothing more,
// and the next provider in this process can open its directory.
func (fs *diskFS) Lock(name string) (io.Closer, error) {
	c, err := fs.FS.Lock(name)
	if err != nil {
		return nil, fs.check(err)
	}
	l := &fsLock{Closer: c, fs: fs, name: name}
	fs.mu.Lock()
	fs.locks[name] = l
	fs.mu.Unlock()
	return l, nil
}

// release releases the lock of the database in dir, if this file system
// holds it.
func (fs *diskFS) release(dir string) {
	name := fs.PathJoin(dir, "LOCK")
	fs.mu.Lock()
	l := fs.locks[name]
	fs.mu.Unlock()
	if l != nil {
		l.Close()
	}
}

func (fs *diskFS) Unwrap() vfs.FS { return fs.FS }

type fsLock struct {
	io.Closer
	fs   *diskFS
	name string
	once sync.Once
}

func (l *fsLock) Close() error {
	var err error
	l.once.Do(func() {
		l.fs.mu.Lock()
		delete(l.fs.locks, l.name)
		l.fs.mu.Unlock()
		err = l.Closer.Close()
	})
	return err
}

// diskFile checks the writes and syncs of a file.
type diskFile struct {
	vfs.File
	fs *diskFS
}

func (f *diskFile) Write(p []byte) (int, error) {
	if err := f.fs.refuse(); err != nil {
		return 0, err
	}
	n, err := f.File.Write(p)
	return n, f.fs.check(err)
}

func (f *diskFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.refuse(); err != nil {
		return 0, err
	}
	n, err := f.File.WriteAt(p, off)
	return n, f.fs.check(err)
}

func (f *diskFile) Preallocate(offset, length int64) error {
	if err := f.fs.refuse(); err != nil {
		return err
	}
	return f.fs.check(f.File.Preallocate(offset, length))
}

func (f *diskFile) Sync() error {
	if err := f.fs.refuse(); err != nil {
		return err
	}
	return f.fs.check(f.File.Sync())
}

func (f *diskFile) SyncData() error {
	if err := f.fs.refuse(); err != nil {
		return err
	}
	return f.fs.check(f.File.SyncData())
}

func (f *diskFile) SyncTo(length int64) (bool, error) {
	if err := f.fs.refuse(); err != nil {
		return false, err
	}
	full, err := f.File.SyncTo(length)
	return full, f.fs.check(err)
}
