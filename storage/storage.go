package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNotFound is returned by Get when no object has the name.
	ErrNotFound = errors.New("storage: object not found")
	// ErrExists is returned by Put with IfAbsent when the name is taken.
	ErrExists = errors.New("storage: object already exists")
	// ErrCorrupt matches every *CorruptError.
	ErrCorrupt = errors.New("storage: object is corrupt")
	// ErrInvalidName is returned for a name that breaks the naming rules
	// described in the package documentation.
	ErrInvalidName = errors.New("storage: invalid object name")
	// ErrClosed is returned by operations on a closed Storage.
	ErrClosed = errors.New("storage: closed")
	// ErrFormatVersion is returned for an object written in a format version
	// newer than this build understands.
	ErrFormatVersion = errors.New("storage: unsupported format version")
)

// CorruptError reports an object whose bytes fail a check: a bad magic, a
// checksum mismatch, a truncation, trailing bytes. It matches ErrCorrupt.
type CorruptError struct {
	// Object is the name of the object (or a file path when the bytes did not
	// come from a Storage).
	Object string
	// Offset is the byte offset in the object where the problem was found,
	// or -1 when it is not known.
	Offset int64
	// Reason says what is wrong, in words.
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("storage: object %s is corrupt at byte %d: %s", e.Object, e.Offset, e.Reason)
	}
	return fmt.Sprintf("storage: object %s is corrupt: %s", e.Object, e.Reason)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// ObjectInfo describes one object returned by List.
type ObjectInfo struct {
	Name string // full object name
	Size int64  // bytes
}

// PutOptions modify a Put.
type PutOptions struct {
	// IfAbsent makes the Put a conditional create: it fails with an error
	// matching ErrExists when an object of that name exists, and two
	// concurrent IfAbsent Puts of one name never both succeed. On S3 this
	// is a conditional write (If-None-Match: *).
	IfAbsent bool
}

// Storage is a flat namespace of immutable objects. It is the SPI that
// backends implement; all methods are safe for concurrent use.
type Storage interface {
	// Put stores the bytes read from r under name, atomically: a reader sees
	// the whole object or none of it (or the previous object of that name),
	// never a part. The object is durable when Put returns nil. If reading r
	// fails, Put returns that error and stores nothing.
	Put(ctx context.Context, name string, r io.Reader, opts PutOptions) error
	// Get opens the object for reading. The caller must close the reader.
	// A missing object gives an error matching ErrNotFound.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// List returns the objects whose names start with prefix, sorted by
	// name. Callers must not rely on an object written a moment ago being
	// listed: object stores may list with a lag.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes the object. Deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error
	// Location returns the URL the storage was opened with, for messages.
	Location() string
	// Close releases resources. It does not delete objects.
	Close() error
}

// ValidateName checks an object name: non-empty, slash-separated
// components, none empty, "." or "..", no backslash or NUL, and no
// component starting with ".cairn-" (reserved for backend bookkeeping).
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	if strings.ContainsAny(name, "\\\x00") {
		return fmt.Errorf("%w: %q contains a backslash or NUL", ErrInvalidName, name)
	}
	for _, c := range strings.Split(name, "/") {
		switch {
		case c == "" || c == "." || c == "..":
			return fmt.Errorf("%w: %q has an empty, \".\" or \"..\" component", ErrInvalidName, name)
		case strings.HasPrefix(c, ".cairn-"):
			return fmt.Errorf("%w: %q uses the reserved prefix .cairn-", ErrInvalidName, name)
		}
	}
	return nil
}

// ValidatePrefix checks a List prefix: a name, a name followed by "/", a
// partial last component, or "". It refuses what could leave the
// namespace ("..", a leading "/", a backslash).
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if strings.ContainsAny(prefix, "\\\x00") || strings.HasPrefix(prefix, "/") {
		return fmt.Errorf("%w: prefix %q starts with \"/\" or contains a backslash or NUL", ErrInvalidName, prefix)
	}
	for _, c := range strings.Split(strings.TrimSuffix(prefix, "/"), "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("%w: prefix %q has an empty, \".\" or \"..\" component", ErrInvalidName, prefix)
		}
	}
	return nil
}

// PutBytes stores data under name. It is a convenience around Put.
func PutBytes(ctx context.Context, s Storage, name string, data []byte, opts PutOptions) error {
	return s.Put(ctx, name, bytes.NewReader(data), opts)
}

// GetBytes reads a whole object into memory. Use it for small objects only.
func GetBytes(ctx context.Context, s Storage, name string) ([]byte, error) {
	rc, err := s.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("storage: read %s: %w", name, err)
	}
	return data, nil
}

// PutStream stores the bytes that write produces under name, streaming them
// to the backend through a pipe so a large object is never held whole in
// memory. If write returns an error nothing is stored and that error is
// returned.
func PutStream(ctx context.Context, s Storage, name string, opts PutOptions, write func(w io.Writer) error) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := write(pw)
		pw.CloseWithError(err) // nil closes with io.EOF
		done <- err
	}()
	putErr := s.Put(ctx, name, pr, opts)
	pr.CloseWithError(errPutEnded) // unblock a writer still writing
	writeErr := <-done
	if writeErr != nil && !(errors.Is(writeErr, errPutEnded) && putErr != nil) {
		return writeErr
	}
	return putErr
}

// errPutEnded is what a PutStream writer sees when Put stopped reading;
// the Put's own error is the one to report.
var errPutEnded = errors.New("storage: put ended before the writer finished")

// ctxReader makes long copies stop when the context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
