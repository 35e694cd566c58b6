package memstate

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cairn-data/cairn/internal/recio"
)

// Format versions of the objects, in the frame header. Version 1: the
// payload alone. Version 2: the same payload, and the frame records the
// object's identity (its name and the store's UID, state.Meta.ObjectIdentity).
const (
	deltaVersion    = 2
	snapshotVersion = 2
)

// Record operations in a delta.
const (
	opPut    = 1
	opDelete = 2
)

const (
	maxKeyLen   = 16 << 20
	maxValueLen = 512 << 20
)

// recordWriter appends records to a buffered writer.
type recordWriter struct {
	w   *bufio.Writer
	tmp [binary.MaxVarintLen64]byte
}

func (rw *recordWriter) bytes(b []byte) {
	n := binary.PutUvarint(rw.tmp[:], uint64(len(b)))
	rw.w.Write(rw.tmp[:n])
	rw.w.Write(b)
}

func (rw *recordWriter) str(s string) {
	n := binary.PutUvarint(rw.tmp[:], uint64(len(s)))
	rw.w.Write(rw.tmp[:n])
	rw.w.WriteString(s)
}

// slab hands out byte slices carved from large allocations, so that loading
// a million keys makes a few hundred allocations, not two million. Slices
// are never reused: the state keeps them.
type slab struct{ buf []byte }

func (s *slab) alloc(n int) []byte {
	if n > 64<<10 {
		return make([]byte, n)
	}
	if len(s.buf) < n {
		s.buf = make([]byte, 1<<20)
	}
	b := s.buf[:n:n]
	s.buf = s.buf[n:]
	return b
}

// decodeDelta calls fn for each record of a delta payload, in order: a
// put (value non-nil) or a delete (value nil). The writer lists each key at
// most once, in the order its batch first wrote it; records are applied in
// order whatever they hold. The slices passed to fn are fresh and may be
// retained.
func decodeDelta(r io.Reader, object string, fn func(key, value []byte, del bool) error) error {
	rr := recio.NewReader(r, object)
	var sl slab
	for ; ; rr.Record++ {
		if end, err := rr.AtEnd(); err != nil {
			return rr.Wrap(err, "record")
		} else if end {
			return nil
		}
		op, err := rr.Byte("operation")
		if err != nil {
			return err
		}
		if op != opPut && op != opDelete {
			return rr.Corrupt(fmt.Sprintf("unknown operation %d", op))
		}
		key, err := rr.Bytes(maxKeyLen, "key", sl.alloc)
		if err != nil {
			return err
		}
		var value []byte
		if op == opPut {
			if value, err = rr.Bytes(maxValueLen, "value", sl.alloc); err != nil {
				return err
			}
		}
		if err := fn(key, value, op == opDelete); err != nil {
			return err
		}
	}
}

// decodeSnapshot calls fn for each key and value of a snapshot payload, in
// strictly ascending key order.
func decodeSnapshot(r io.Reader, object string, fn func(key, value []byte) error) error {
	rr := recio.NewReader(r, object)
	var sl slab
	var prev []byte
	for ; ; rr.Record++ {
		if end, err := rr.AtEnd(); err != nil {
			return rr.Wrap(err, "record")
		} else if end {
			return nil
		}
		key, err := rr.Bytes(maxKeyLen, "key", sl.alloc)
		if err != nil {
			return err
		}
		if prev != nil && bytes.Compare(prev, key) >= 0 {
			return rr.Corrupt("keys out of order")
		}
		prev = key
		value, err := rr.Bytes(maxValueLen, "value", sl.alloc)
		if err != nil {
			return err
		}
		if err := fn(key, value); err != nil {
			return err
		}
	}
}
