package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"

	"github.com/cairn-data/cairn/internal/iox"

	"github.com/cairn-data/cairn/storage"
)

// Magic starts every framed object. The high first byte keeps text tools
// from mistaking an object for text.
const Magic = "\x89CRN"

const (
	headerSize = 12
	chunkHead  = 8
	endSize    = 20
	// identHead and identTail frame an identity block: its length before
	// it, its checksum after.
	identHead = 2
	identTail = 4
	// MaxIdentity is the longest identity an object may record.
	MaxIdentity = 1024
	// ChunkSize is the largest chunk the Writer emits.
	ChunkSize = 64 << 10
	// maxChunk is the largest chunk a Reader accepts, so a corrupt length
	// cannot make it allocate gigabytes.
	maxChunk = 4 << 20
)

// Kind says what an object holds. A reader asks for the kind it expects, so
// a delta is never decoded as a snapshot.
type Kind byte

// Object kinds.
const (
	KindDelta          Kind = 'd' // state store changes of one version
	KindSnapshot       Kind = 's' // state store contents at one version
	KindStoreMeta      Kind = 'm' // state store provider and schema
	KindLogEntry       Kind = 'l' // one entry of a metalog
	KindLease          Kind = 'L' // writer lease of a checkpoint location
	KindManifest       Kind = 'M' // manifest of a dataset checkpoint
	KindRecords        Kind = 'r' // records of a dataset partition (gob), for types Parquet cannot hold
	KindQueryMeta      Kind = 'Q' // metadata of a streaming query: ID and pinned settings
	KindPartDone       Kind = 'p' // completion record of one partition of a resumable write
	KindPipeline       Kind = 'P' // a record of a resumable pipeline: pipeline, run, stage, publication
	KindChangelog      Kind = 'c' // pebble state store: the writes of one version, in order
	KindPebbleSnapshot Kind = 'S' // pebble state store: manifest of a snapshot (SST files and small files)
)

var kindNames = map[Kind]string{
	KindDelta:          "state delta",
	KindSnapshot:       "state snapshot",
	KindStoreMeta:      "state store metadata",
	KindLogEntry:       "log entry",
	KindLease:          "lease",
	KindManifest:       "checkpoint manifest",
	KindRecords:        "partition records",
	KindQueryMeta:      "query metadata",
	KindPartDone:       "partition completion record",
	KindPipeline:       "pipeline record",
	KindChangelog:      "state changelog",
	KindPebbleSnapshot: "pebble state snapshot manifest",
}

// Known reports whether this build of cairn knows the kind.
func (k Kind) Known() bool {
	_, ok := kindNames[k]
	return ok
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("unknown kind 0x%02x", byte(k))
}

// Header flags (bytes 6 and 7 of the header, little-endian).
const (
	// flagIdentity says that an identity block follows the header.
	flagIdentity = 1 << 0
	knownFlags   = flagIdentity
)

// Identity is what an object says it is, recorded inside its checked bytes
// so that an object copied or moved to another name is refused rather than
// loaded. By convention it is the object's own name, relative to the root
// of the storage it was written to (a checkpoint location), then optional
// space-separated qualifiers that tie it to its owner, such as
// "state/0/1/25.delta store=3f9c0d1e...". Readers derive the identity they
// expect from the name they read and compare (Reader.CheckIdentity).
type Identity string

// Name returns the object name an identity records: its text up to the
// first space.
func (id Identity) Name() string {
	name, _, _ := strings.Cut(string(id), " ")
	return name
}

// Writer frames a payload onto an underlying writer. Not safe for
// concurrent use.
type Writer struct {
	w      io.Writer
	buf    []byte // chunkHead bytes of room, then pending payload
	total  uint64
	crc    uint32
	err    error
	closed bool
}

// NewWriter writes the header and returns a Writer for the payload. The
// object is complete only after Close returns nil.
//
// With an identity (at most one; an empty one counts as none), the header
// is followed by an identity block recording it. A format that starts
// recording an identity must do so in a new format version, so that older
// builds refuse its objects as too new (storage.ErrFormatVersion) rather
// than as damaged. NewWriter panics on more than one identity or on one
// longer than MaxIdentity: both are programming errors.
func NewWriter(w io.Writer, kind Kind, version uint8, id ...Identity) *Writer {
	fw := &Writer{w: w, buf: make([]byte, chunkHead, chunkHead+ChunkSize)}
	ident := oneIdentity(id)
	h := make([]byte, headerSize, headerSize+identHead+len(ident)+identTail)
	copy(h, Magic)
	h[4] = byte(kind)
	h[5] = version
	if ident != "" {
		binary.LittleEndian.PutUint16(h[6:], flagIdentity)
	}
	binary.LittleEndian.PutUint32(h[8:], crc32.Checksum(h[:8], iox.Castagnoli))
	if ident != "" {
		h = binary.LittleEndian.AppendUint16(h, uint16(len(ident)))
		h = append(h, ident...)
		h = binary.LittleEndian.AppendUint32(h, crc32.Checksum(h, iox.Castagnoli))
	}
	_, fw.err = w.Write(h)
	return fw
}

func oneIdentity(id []Identity) Identity {
	switch {
	case len(id) == 0:
		return ""
	case len(id) > 1:
		panic(fmt.Sprintf("frame: %d identities given, at most one is allowed", len(id)))
	case len(id[0]) > MaxIdentity:
		panic(fmt.Sprintf("frame: identity of %d bytes, longer than the limit of %d", len(id[0]), MaxIdentity))
	}
	return id[0]
}

// Write implements io.Writer.
func (fw *Writer) Write(p []byte) (int, error) {
	if fw.err != nil {
		return 0, fw.err
	}
	if fw.closed {
		return 0, errors.New("frame: write after Close")
	}
	n := 0
	for len(p) > 0 {
		room := chunkHead + ChunkSize - len(fw.buf)
		k := min(room, len(p))
		fw.buf = append(fw.buf, p[:k]...)
		p = p[k:]
		n += k
		if len(fw.buf) == chunkHead+ChunkSize {
			if err := fw.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (fw *Writer) flush() error {
	payload := fw.buf[chunkHead:]
	if len(payload) == 0 {
		return nil
	}
	binary.LittleEndian.PutUint32(fw.buf[0:], uint32(len(payload)))
	c := crc32.Update(crc32.Checksum(fw.buf[0:4], iox.Castagnoli), iox.Castagnoli, payload)
	binary.LittleEndian.PutUint32(fw.buf[4:], c)
	fw.total += uint64(len(payload))
	fw.crc = crc32.Update(fw.crc, iox.Castagnoli, payload)
	if _, err := fw.w.Write(fw.buf); err != nil {
		fw.err = err
		return err
	}
	fw.buf = fw.buf[:chunkHead]
	return nil
}

// Close flushes the last chunk and writes the end block. It does not close
// the underlying writer.
func (fw *Writer) Close() error {
	if fw.closed {
		return fw.err
	}
	if err := fw.flush(); err != nil {
		return err
	}
	fw.closed = true
	if fw.err != nil {
		return fw.err
	}
	var e [endSize]byte
	binary.LittleEndian.PutUint64(e[8:], fw.total)
	binary.LittleEndian.PutUint32(e[16:], fw.crc)
	c := crc32.Update(crc32.Checksum(e[0:4], iox.Castagnoli), iox.Castagnoli, e[8:])
	binary.LittleEndian.PutUint32(e[4:], c)
	_, fw.err = fw.w.Write(e[:])
	return fw.err
}

// Reader reads and verifies a framed object. Not safe for concurrent use.
type Reader struct {
	r       io.Reader
	object  string
	kind    Kind
	version uint8
	ident   Identity
	off     int64 // offset in the object of the next unread byte of r
	chunk   []byte
	pos     int
	total   uint64
	crc     uint32
	err     error // sticky: io.EOF after a verified end
}

// NewReader reads and checks the header of an object expected to be of
// kind want, in a format version no newer than maxVersion. object names the
// object in errors.
func NewReader(r io.Reader, object string, want Kind, maxVersion uint8) (*Reader, error) {
	fr := &Reader{r: r, object: object}
	var h [headerSize]byte
	n, err := io.ReadFull(r, h[:])
	fr.off = int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fr.corrupt(0, fmt.Sprintf("truncated: %d bytes, too short for the %d-byte header", n, headerSize))
		}
		return nil, fmt.Errorf("read %s: %w", object, err)
	}
	if string(h[:4]) != Magic {
		return nil, fr.corrupt(0, fmt.Sprintf("not a cairn object: starts with %q, want magic %q", h[:4], Magic))
	}
	if got := binary.LittleEndian.Uint32(h[8:]); got != crc32.Checksum(h[:8], iox.Castagnoli) {
		return nil, fr.corrupt(8, "header checksum mismatch")
	}
	fr.kind, fr.version = Kind(h[4]), h[5]
	if fr.kind != want {
		return nil, fr.corrupt(4, fmt.Sprintf("holds a %s, expected a %s", fr.kind, want))
	}
	if fr.version == 0 {
		return nil, fr.corrupt(5, "format version 0 does not exist")
	}
	if fr.version > maxVersion {
		return nil, fmt.Errorf("%w: %s is a %s in format version %d; this build of cairn reads versions 1 to %d: upgrade cairn to read it",
			storage.ErrFormatVersion, object, fr.kind, fr.version, maxVersion)
	}
	flags := binary.LittleEndian.Uint16(h[6:])
	if flags&^knownFlags != 0 {
		return nil, fr.corrupt(6, fmt.Sprintf("unknown header flags 0x%04x", flags&^knownFlags))
	}
	if flags&flagIdentity != 0 {
		if err := fr.readIdentity(h[:]); err != nil {
			return nil, err
		}
	}
	return fr, nil
}

// readIdentity reads and verifies the identity block after header h.
func (fr *Reader) readIdentity(h []byte) error {
	start := fr.off
	var lb [identHead]byte
	if err := fr.readFull(lb[:], "identity block"); err != nil {
		return err
	}
	n := binary.LittleEndian.Uint16(lb[:])
	if n == 0 || n > MaxIdentity {
		return fr.corrupt(start, fmt.Sprintf("identity length %d is outside 1 to %d", n, MaxIdentity))
	}
	b := make([]byte, int(n)+identTail)
	if err := fr.readFull(b, "identity block"); err != nil {
		return err
	}
	c := crc32.Update(crc32.Checksum(h, iox.Castagnoli), iox.Castagnoli, lb[:])
	c = crc32.Update(c, iox.Castagnoli, b[:n])
	if c != binary.LittleEndian.Uint32(b[n:]) {
		return fr.corrupt(start, "identity block checksum mismatch")
	}
	fr.ident = Identity(b[:n])
	return nil
}

// Kind returns the object kind from the header.
func (fr *Reader) Kind() Kind { return fr.kind }

// Identity returns the identity the object records, verified, or "" for an
// object written without one (by a build before identities, or by a format
// that records none).
func (fr *Reader) Identity() Identity { return fr.ident }

// CheckIdentity refuses an object that records an identity other than
// want, with a *storage.CorruptError that names the object, says what it
// holds and what its name says it should hold, and what to do. An object
// that records no identity (written before identities) is accepted: there
// is nothing to check.
func (fr *Reader) CheckIdentity(want Identity) error {
	return CheckIdentity(fr.object, fr.ident, want)
}

// CheckIdentity compares the identity got, read from object, with the one
// its name and owner call for; see Reader.CheckIdentity.
func CheckIdentity(object string, got, want Identity) error {
	if got == "" || got == want {
		return nil
	}
	where := "was copied or moved here from another object"
	if got.Name() == want.Name() {
		where = "belongs to another store or checkpoint location with the same layout, and was copied here"
	}
	return &storage.CorruptError{Object: object, Offset: -1, Reason: fmt.Sprintf(
		"it is not what its name says: it holds %q, and its name and location call for %q; it %s. "+
			"Loading it would give wrong results: put back the object that belongs here (from a backup), "+
			"or start over with a new checkpoint location", got, want, where)}
}

// Version returns the format version from the header.
func (fr *Reader) Version() uint8 { return fr.version }

func (fr *Reader) corrupt(off int64, reason string) error {
	return &storage.CorruptError{Object: fr.object, Offset: off, Reason: reason}
}

// Read implements io.Reader. It returns io.EOF only at a verified end.
func (fr *Reader) Read(p []byte) (int, error) {
	for fr.pos == len(fr.chunk) {
		if fr.err != nil {
			return 0, fr.err
		}
		fr.err = fr.next()
	}
	n := copy(p, fr.chunk[fr.pos:])
	fr.pos += n
	return n, nil
}

// readFull reads exactly len(b) bytes, turning an early end into corruption.
func (fr *Reader) readFull(b []byte, what string) error {
	n, err := io.ReadFull(fr.r, b)
	start := fr.off
	fr.off += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fr.corrupt(start, fmt.Sprintf("truncated in the %s: %d of %d bytes present", what, n, len(b)))
		}
		return fmt.Errorf("read %s at byte %d: %w", fr.object, start, err)
	}
	return nil
}

// next loads the next chunk, or verifies the end block and returns io.EOF.
func (fr *Reader) next() error {
	start := fr.off
	var head [chunkHead]byte
	if err := fr.readFull(head[:], "chunk header (the object has no end block)"); err != nil {
		return err
	}
	length := binary.LittleEndian.Uint32(head[:4])
	if length == 0 {
		var tail [endSize - chunkHead]byte
		if err := fr.readFull(tail[:], "end block"); err != nil {
			return err
		}
		c := crc32.Update(crc32.Checksum(head[:4], iox.Castagnoli), iox.Castagnoli, tail[:])
		if c != binary.LittleEndian.Uint32(head[4:]) {
			return fr.corrupt(start, "end block checksum mismatch")
		}
		if total := binary.LittleEndian.Uint64(tail[:8]); total != fr.total {
			return fr.corrupt(start, fmt.Sprintf("payload is %d bytes, end block says %d", fr.total, total))
		}
		if crc := binary.LittleEndian.Uint32(tail[8:]); crc != fr.crc {
			return fr.corrupt(start, "payload checksum mismatch")
		}
		var extra [1]byte
		if n, _ := io.ReadFull(fr.r, extra[:]); n > 0 {
			return fr.corrupt(fr.off, "bytes after the end block")
		}
		return io.EOF
	}
	if length > maxChunk {
		return fr.corrupt(start, fmt.Sprintf("chunk length %d exceeds the limit of %d", length, maxChunk))
	}
	if cap(fr.chunk) < int(length) {
		fr.chunk = make([]byte, length)
	}
	fr.chunk = fr.chunk[:length]
	fr.pos = 0
	if err := fr.readFull(fr.chunk, "chunk payload"); err != nil {
		fr.chunk = fr.chunk[:0]
		return err
	}
	c := crc32.Update(crc32.Checksum(head[:4], iox.Castagnoli), iox.Castagnoli, fr.chunk)
	if c != binary.LittleEndian.Uint32(head[4:]) {
		fr.chunk = fr.chunk[:0]
		return fr.corrupt(start, fmt.Sprintf("chunk checksum mismatch (chunk of %d bytes)", length))
	}
	fr.total += uint64(length)
	fr.crc = crc32.Update(fr.crc, iox.Castagnoli, fr.chunk)
	return nil
}
