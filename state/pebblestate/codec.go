package pebblestate

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path"
	"strings"

	"github.com/cairn-data/cairn/storage"
)

// Format versions of the payloads, in the frame header.
const (
	changelogVersion  = 1
	checkpointVersion = 1
)

// Record operations in a changelog.
const (
	opPut    = 1
	opDelete = 2
)

// Limits a decoder enforces, so that a damaged length cannot make it
// allocate without bound.
const (
	maxKeyLen        = 16 << 20
	maxValueLen      = 512 << 20
	maxFileNameLen   = 255
	maxFiles         = 1 << 20
	maxInlineFileLen = 256 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// changelogWriter encodes changelog records.
type changelogWriter struct {
	w   *bufio.Writer
	tmp [binary.MaxVarintLen64]byte
}

func (cw *changelogWriter) bytes(b []byte) {
	n := binary.PutUvarint(cw.tmp[:], uint64(len(b)))
	cw.w.Write(cw.tmp[:n])
	cw.w.Write(b)
}

func (cw *changelogWriter) put(key, value []byte) {
	cw.w.WriteByte(opPut)
	cw.bytes(key)
	cw.bytes(value)
}

func (cw *changelogWriter) delete(key []byte) {
	cw.w.WriteByte(opDelete)
	cw.bytes(key)
}

// payloadReader decodes the records of a verified frame payload and turns
// a short or malformed payload into a *storage.CorruptError naming the
// object.
type payloadReader struct {
	r      *bufio.Reader
	object string
	off    int64 // payload offset of the next byte
	record int   // index of the record being read
	buf    []byte
}

func newPayloadReader(r io.Reader, object string) *payloadReader {
	return &payloadReader{r: bufio.NewReaderSize(r, 256<<10), object: object}
}

func (pr *payloadReader) corrupt(reason string) error {
	return &storage.CorruptError{Object: pr.object, Offset: -1,
		Reason: fmt.Sprintf("record %d (payload byte %d): %s", pr.record, pr.off, reason)}
}

// wrap turns an early end into corruption, keeping corruption found by the
// frame reader (which names the byte offset) and I/O errors as they are.
func (pr *payloadReader) wrap(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return pr.corrupt("payload ends inside the " + what)
	}
	return err
}

func (pr *payloadReader) atEnd() (bool, error) {
	_, err := pr.r.Peek(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

func (pr *payloadReader) byte(what string) (byte, error) {
	b, err := pr.r.ReadByte()
	if err != nil {
		return 0, pr.wrap(err, what)
	}
	pr.off++
	return b, nil
}

func (pr *payloadReader) ReadByte() (byte, error) {
	b, err := pr.r.ReadByte()
	if err == nil {
		pr.off++
	}
	return b, err
}

// uvarint reads a minimally encoded uvarint no greater than limit.
func (pr *payloadReader) uvarint(limit uint64, what string) (uint64, error) {
	start := pr.off
	n, err := binary.ReadUvarint(pr)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, pr.wrap(err, what)
		}
		if _, isCorrupt := errors.AsType[*storage.CorruptError](err); isCorrupt {
			return 0, err
		}
		return 0, pr.corrupt("bad " + what + ": " + err.Error())
	}
	var tmp [binary.MaxVarintLen64]byte
	if used := pr.off - start; used != int64(binary.PutUvarint(tmp[:], n)) {
		return 0, pr.corrupt(what + " is not minimally encoded")
	}
	if n > limit {
		return 0, pr.corrupt(fmt.Sprintf("%s %d exceeds the limit of %d", what, n, limit))
	}
	return n, nil
}

// bytes reads a length-prefixed byte string into the reader's buffer; the
// slice is valid until the next call.
func (pr *payloadReader) bytes(limit int, what string) ([]byte, error) {
	n, err := pr.uvarint(uint64(limit), what+" length")
	if err != nil {
		return nil, err
	}
	return pr.fixed(int(n), what)
}

// fixed reads n bytes into the reader's buffer; the slice is valid until
// the next call.
func (pr *payloadReader) fixed(n int, what string) ([]byte, error) {
	if cap(pr.buf) < n {
		pr.buf = make([]byte, n)
	}
	b := pr.buf[:n]
	if _, err := io.ReadFull(pr.r, b); err != nil {
		return nil, pr.wrap(err, what)
	}
	pr.off += int64(n)
	return b, nil
}

// decodeChangelog calls fn for each record of a changelog payload, in
// order: a put (del false) or a delete. A key may appear more than once
// (the batch wrote it more than once); records are applied in order. The
// slices passed to fn are valid only during the call.
func decodeChangelog(r io.Reader, object string, fn func(del bool, key, value []byte) error) error {
	pr := newPayloadReader(r, object)
	var key []byte
	for ; ; pr.record++ {
		if end, err := pr.atEnd(); err != nil {
			return pr.wrap(err, "record")
		} else if end {
			return nil
		}
		op, err := pr.byte("operation")
		if err != nil {
			return err
		}
		if op != opPut && op != opDelete {
			return pr.corrupt(fmt.Sprintf("unknown operation %d", op))
		}
		k, err := pr.bytes(maxKeyLen, "key")
		if err != nil {
			return err
		}
		key = append(key[:0], k...)
		var value []byte
		if op == opPut {
			if value, err = pr.bytes(maxValueLen, "value"); err != nil {
				return err
			}
		}
		if err := fn(op == opDelete, key, value); err != nil {
			return err
		}
	}
}

// File types in a checkpoint manifest.
const (
	fileShared = 1 // an SST or blob file, stored as its own object named by its SHA-256
	fileInline = 2 // a small file (MANIFEST, OPTIONS, markers), held in the manifest
)

// checkpointFile is one file of a Pebble checkpoint.
type checkpointFile struct {
	Name   string   // base name in the database directory, e.g. "000012.sst"
	Shared bool     // stored as the object SharedName, not inline
	Size   int64    // bytes
	CRC    uint32   // CRC32C (Castagnoli) of the bytes
	Hash   [32]byte // SHA-256 of the bytes, for shared files
	Data   []byte   // the bytes, for inline files
}

// checkpointManifest lists the files of a Pebble checkpoint of one
// version, in ascending order of name.
type checkpointManifest struct {
	Version int64
	Files   []checkpointFile
}

// sharedExt reports whether a database file is stored as a shared object,
// and the extension the object keeps.
func sharedExt(name string) (string, bool) {
	switch ext := path.Ext(name); ext {
	case ".sst", ".blob":
		return ext, true
	}
	return "", false
}

// validFileName reports whether name is a plain file name that a manifest
// may ask to create in a database directory: no separator, no "." or "..".
func validFileName(name string) bool {
	return name != "" && len(name) <= maxFileNameLen && name != "." && name != ".." &&
		!strings.ContainsAny(name, "/\\\x00")
}

// encodeManifest returns the payload of a checkpoint manifest.
func encodeManifest(m *checkpointManifest) []byte {
	var buf bytes.Buffer
	var tmp [binary.MaxVarintLen64]byte
	uv := func(n uint64) { buf.Write(tmp[:binary.PutUvarint(tmp[:], n)]) }
	uv(uint64(m.Version))
	uv(uint64(len(m.Files)))
	for _, f := range m.Files {
		uv(uint64(len(f.Name)))
		buf.WriteString(f.Name)
		if f.Shared {
			buf.WriteByte(fileShared)
		} else {
			buf.WriteByte(fileInline)
		}
		uv(uint64(f.Size))
		buf.Write(binary.LittleEndian.AppendUint32(nil, f.CRC))
		if f.Shared {
			buf.Write(f.Hash[:])
		} else {
			buf.Write(f.Data)
		}
	}
	return buf.Bytes()
}

// decodeManifest decodes and checks a checkpoint manifest payload: names
// are plain file names in strictly ascending order, shared files are SST
// or blob files, inline files match their CRC32C. Damage is a
// *storage.CorruptError naming object.
func decodeManifest(payload []byte, object string) (*checkpointManifest, error) {
	pr := newPayloadReader(bytes.NewReader(payload), object)
	pr.record = -1 // the header
	v, err := pr.uvarint(1<<62, "version")
	if err != nil {
		return nil, err
	}
	n, err := pr.uvarint(maxFiles, "file count")
	if err != nil {
		return nil, err
	}
	m := &checkpointManifest{Version: int64(v), Files: make([]checkpointFile, 0, min(n, 1024))}
	for pr.record = 0; pr.record < int(n); pr.record++ {
		nameBytes, err := pr.bytes(maxFileNameLen, "file name")
		if err != nil {
			return nil, err
		}
		f := checkpointFile{Name: string(nameBytes)}
		if !validFileName(f.Name) {
			return nil, pr.corrupt(fmt.Sprintf("file name %q is not a plain file name", f.Name))
		}
		if len(m.Files) > 0 && m.Files[len(m.Files)-1].Name >= f.Name {
			return nil, pr.corrupt(fmt.Sprintf("file %q is not in ascending order", f.Name))
		}
		typ, err := pr.byte("file type")
		if err != nil {
			return nil, err
		}
		if typ != fileShared && typ != fileInline {
			return nil, pr.corrupt(fmt.Sprintf("unknown file type %d", typ))
		}
		f.Shared = typ == fileShared
		if _, ok := sharedExt(f.Name); ok != f.Shared {
			return nil, pr.corrupt(fmt.Sprintf("file %q is stored as the wrong type", f.Name))
		}
		limit := uint64(maxInlineFileLen)
		if f.Shared {
			limit = 1 << 50
		}
		size, err := pr.uvarint(limit, "file size")
		if err != nil {
			return nil, err
		}
		f.Size = int64(size)
		crc, err := pr.fixed(4, "file checksum")
		if err != nil {
			return nil, err
		}
		f.CRC = binary.LittleEndian.Uint32(crc)
		if f.Shared {
			h, err := pr.fixed(32, "file hash")
			if err != nil {
				return nil, err
			}
			copy(f.Hash[:], h)
		} else {
			data, err := pr.fixed(int(size), "file contents")
			if err != nil {
				return nil, err
			}
			f.Data = bytes.Clone(data)
			if crc32.Checksum(f.Data, castagnoli) != f.CRC {
				return nil, pr.corrupt(fmt.Sprintf("inline file %q does not match its checksum", f.Name))
			}
		}
		m.Files = append(m.Files, f)
	}
	if end, err := pr.atEnd(); err != nil {
		return nil, pr.wrap(err, "manifest")
	} else if !end {
		return nil, pr.corrupt("bytes after the last file")
	}
	return m, nil
}

// localMeta is what a local database records about itself, under
// metaKey, in the same batch as the data of each version.
type localMeta struct {
	Identity [32]byte // the store's identity (see Provider.identity)
	Version  int64
	Keys     int64 // number of keys, or -1 when not counted
}

const localMetaMagic = "cairn-pebble-1"

func (m localMeta) encode() []byte {
	b := make([]byte, 0, len(localMetaMagic)+32+2*binary.MaxVarintLen64)
	b = append(b, localMetaMagic...)
	b = append(b, m.Identity[:]...)
	b = binary.AppendUvarint(b, uint64(m.Version))
	return binary.AppendVarint(b, m.Keys)
}

func decodeLocalMeta(b []byte) (localMeta, bool) {
	var m localMeta
	if !bytes.HasPrefix(b, []byte(localMetaMagic)) || len(b) < len(localMetaMagic)+32 {
		return m, false
	}
	b = b[len(localMetaMagic):]
	copy(m.Identity[:], b)
	b = b[32:]
	v, n := binary.Uvarint(b)
	if n <= 0 || v > 1<<62 {
		return m, false
	}
	b = b[n:]
	k, n := binary.Varint(b)
	if n <= 0 || n != len(b) || k < -1 {
		return m, false
	}
	m.Version, m.Keys = int64(v), k
	return m, true
}
