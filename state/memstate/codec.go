package memstate

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cairn-data/cairn/storage"
)

// Format versions of the payloads, in the frame header.
const (
	deltaVersion    = 1
	snapshotVersion = 1
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

// recordReader decodes records from a verified frame payload.
type recordReader struct {
	r      *bufio.Reader
	object string
	off    int64 // payload offset of the next byte
	record int   // index of the record being read
	slab   slab
}

func newRecordReader(r io.Reader, object string) *recordReader {
	return &recordReader{r: bufio.NewReaderSize(r, 256<<10), object: object}
}

func (rr *recordReader) corrupt(reason string) error {
	return &storage.CorruptError{Object: rr.object, Offset: -1,
		Reason: fmt.Sprintf("record %d (payload byte %d): %s", rr.record, rr.off, reason)}
}

// wrap turns a read error into corruption, keeping corruption from the
// frame reader (which names the byte offset) and real I/O errors as they are.
func (rr *recordReader) wrap(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return rr.corrupt("payload ends inside the " + what)
	}
	return err
}

// atEnd reports whether the payload is exhausted (after frame verification).
func (rr *recordReader) atEnd() (bool, error) {
	_, err := rr.r.Peek(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

func (rr *recordReader) byte(what string) (byte, error) {
	b, err := rr.r.ReadByte()
	if err != nil {
		return 0, rr.wrap(err, what)
	}
	rr.off++
	return b, nil
}

func (rr *recordReader) bytes(limit int, what string) ([]byte, error) {
	start := rr.off
	n, err := binary.ReadUvarint(byteCounter{rr})
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, rr.wrap(err, what+" length")
		}
		if _, isCorrupt := errors.AsType[*storage.CorruptError](err); isCorrupt {
			return nil, err
		}
		rr.off = start
		return nil, rr.corrupt("bad " + what + " length: " + err.Error())
	}
	var tmp [binary.MaxVarintLen64]byte
	if used := rr.off - start; used != int64(binary.PutUvarint(tmp[:], n)) {
		return nil, rr.corrupt(fmt.Sprintf("%s length is not minimally encoded", what))
	}
	if n > uint64(limit) {
		return nil, rr.corrupt(fmt.Sprintf("%s length %d exceeds the limit of %d", what, n, limit))
	}
	b := rr.slab.alloc(int(n))
	if _, err := io.ReadFull(rr.r, b); err != nil {
		return nil, rr.wrap(err, what)
	}
	rr.off += int64(n)
	return b, nil
}

type byteCounter struct{ rr *recordReader }

func (c byteCounter) ReadByte() (byte, error) {
	b, err := c.rr.r.ReadByte()
	if err == nil {
		c.rr.off++
	}
	return b, err
}

// decodeDelta calls fn for each record of a delta payload, in order: a
// put (value non-nil) or a delete (value nil). The writer lists each key at
// most once, in the order its batch first wrote it; records are applied in
// order whatever they hold. The slices passed to fn are fresh and may be
// retained.
func decodeDelta(r io.Reader, object string, fn func(key, value []byte, del bool) error) error {
	rr := newRecordReader(r, object)
	for ; ; rr.record++ {
		if end, err := rr.atEnd(); err != nil {
			return rr.wrap(err, "record")
		} else if end {
			return nil
		}
		op, err := rr.byte("operation")
		if err != nil {
			return err
		}
		if op != opPut && op != opDelete {
			return rr.corrupt(fmt.Sprintf("unknown operation %d", op))
		}
		key, err := rr.bytes(maxKeyLen, "key")
		if err != nil {
			return err
		}
		var value []byte
		if op == opPut {
			if value, err = rr.bytes(maxValueLen, "value"); err != nil {
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
	rr := newRecordReader(r, object)
	var prev []byte
	for ; ; rr.record++ {
		if end, err := rr.atEnd(); err != nil {
			return rr.wrap(err, "record")
		} else if end {
			return nil
		}
		key, err := rr.bytes(maxKeyLen, "key")
		if err != nil {
			return err
		}
		if prev != nil && bytes.Compare(prev, key) >= 0 {
			return rr.corrupt("keys out of order")
		}
		prev = key
		value, err := rr.bytes(maxValueLen, "value")
		if err != nil {
			return err
		}
		if err := fn(key, value); err != nil {
			return err
		}
	}
}
