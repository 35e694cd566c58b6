// Package recio reads the records of a verified frame payload (see
// internal/frame): bytes, minimally encoded uvarints with limits, and
// length-prefixed byte strings. A payload that ends early or breaks a rule
// becomes a *storage.CorruptError naming the object, the record and the
// payload byte. The state providers' delta, snapshot and changelog decoders
// share it.
package recio

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cairn-data/cairn/storage"
)

// Reader decodes records from a payload. Not safe for concurrent use.
type Reader struct {
	r      *bufio.Reader
	object string
	off    int64 // payload offset of the next byte
	// Record is the index of the record being read, for error messages;
	// the decoder advances it.
	Record int
	buf    []byte
}

// NewReader reads the payload r of object.
func NewReader(r io.Reader, object string) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 256<<10), object: object}
}

// Corrupt returns a corruption error for the current record.
func (rr *Reader) Corrupt(reason string) error {
	return &storage.CorruptError{Object: rr.object, Offset: -1,
		Reason: fmt.Sprintf("record %d (payload byte %d): %s", rr.Record, rr.off, reason)}
}

// Wrap turns an early end into corruption, keeping corruption found by the
// frame reader (which names the byte offset) and I/O errors as they are.
func (rr *Reader) Wrap(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return rr.Corrupt("payload ends inside the " + what)
	}
	return err
}

// AtEnd reports whether the payload is exhausted.
func (rr *Reader) AtEnd() (bool, error) {
	_, err := rr.r.Peek(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// Byte reads one byte.
func (rr *Reader) Byte(what string) (byte, error) {
	b, err := rr.r.ReadByte()
	if err != nil {
		return 0, rr.Wrap(err, what)
	}
	rr.off++
	return b, nil
}

// ReadByte implements io.ByteReader, counting the offset.
func (rr *Reader) ReadByte() (byte, error) {
	b, err := rr.r.ReadByte()
	if err == nil {
		rr.off++
	}
	return b, err
}

// Uvarint reads a minimally encoded uvarint no greater than limit.
func (rr *Reader) Uvarint(limit uint64, what string) (uint64, error) {
	start := rr.off
	n, err := binary.ReadUvarint(rr)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, rr.Wrap(err, what)
		}
		if _, isCorrupt := errors.AsType[*storage.CorruptError](err); isCorrupt {
			return 0, err
		}
		rr.off = start
		return 0, rr.Corrupt("bad " + what + ": " + err.Error())
	}
	var tmp [binary.MaxVarintLen64]byte
	if used := rr.off - start; used != int64(binary.PutUvarint(tmp[:], n)) {
		return 0, rr.Corrupt(what + " is not minimally encoded")
	}
	if n > limit {
		return 0, rr.Corrupt(fmt.Sprintf("%s %d exceeds the limit of %d", what, n, limit))
	}
	return n, nil
}

// Bytes reads a length-prefixed byte string of at most limit bytes into a
// slice from alloc, or, with alloc nil, into the reader's buffer (valid
// until the next call).
func (rr *Reader) Bytes(limit int, what string, alloc func(n int) []byte) ([]byte, error) {
	n, err := rr.Uvarint(uint64(limit), what+" length")
	if err != nil {
		return nil, err
	}
	var b []byte
	if alloc != nil {
		b = alloc(int(n))
	}
	return rr.Fixed(int(n), what, b)
}

// Fixed reads n bytes into dst (len n), or with dst nil into the reader's
// buffer (valid until the next call).
func (rr *Reader) Fixed(n int, what string, dst []byte) ([]byte, error) {
	if dst == nil {
		if cap(rr.buf) < n {
			rr.buf = make([]byte, n)
		}
		dst = rr.buf[:n]
	}
	if _, err := io.ReadFull(rr.r, dst); err != nil {
		return nil, rr.Wrap(err, what)
	}
	rr.off += int64(n)
	return dst, nil
}
