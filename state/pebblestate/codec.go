package pebblestate

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"path"
	"strings"

	"github.com/cairn-data/cairn/internal/iox"

	"github.com/cairn-data/cairn/internal/recio"
)

// Format versions of the objects, in the frame header. Version 1: the
// payload alone. Version 2: the same payload, and the frame records the
// object's identity (its name and the store's UID, state.Meta.ObjectIdentity).
const (
	changelogVersion  = 2
	checkpointVersion = 2
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

// decodeChangelog calls fn for each record of a changelog payload, in
// order: a put (del false) or a delete. A key may appear more than once
// (the batch wrote it more than once); records are applied in order. The
// slices passed to fn are valid only during the call.
func decodeChangelog(r io.Reader, object string, fn func(del bool, key, value []byte) error) error {
	pr := recio.NewReader(r, object)
	var key []byte
	for ; ; pr.Record++ {
		if end, err := pr.AtEnd(); err != nil {
			return pr.Wrap(err, "record")
		} else if end {
			return nil
		}
		op, err := pr.Byte("operation")
		if err != nil {
			return err
		}
		if op != opPut && op != opDelete {
			return pr.Corrupt(fmt.Sprintf("unknown operation %d", op))
		}
		k, err := pr.Bytes(maxKeyLen, "key", nil)
		if err != nil {
			return err
		}
		key = append(key[:0], k...)
		var value []byte
		if op == opPut {
			if value, err = pr.Bytes(maxValueLen, "value", nil); err != nil {
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
	pr := recio.NewReader(bytes.NewReader(payload), object)
	pr.Record = -1 // the header
	v, err := pr.Uvarint(1<<62, "version")
	if err != nil {
		return nil, err
	}
	n, err := pr.Uvarint(maxFiles, "file count")
	if err != nil {
		return nil, err
	}
	m := &checkpointManifest{Version: int64(v), Files: make([]checkpointFile, 0, min(n, 1024))}
	for pr.Record = 0; pr.Record < int(n); pr.Record++ {
		nameBytes, err := pr.Bytes(maxFileNameLen, "file name", nil)
		if err != nil {
			return nil, err
		}
		f := checkpointFile{Name: string(nameBytes)}
		if !validFileName(f.Name) {
			return nil, pr.Corrupt(fmt.Sprintf("file name %q is not a plain file name", f.Name))
		}
		if len(m.Files) > 0 && m.Files[len(m.Files)-1].Name >= f.Name {
			return nil, pr.Corrupt(fmt.Sprintf("file %q is not in ascending order", f.Name))
		}
		typ, err := pr.Byte("file type")
		if err != nil {
			return nil, err
		}
		if typ != fileShared && typ != fileInline {
			return nil, pr.Corrupt(fmt.Sprintf("unknown file type %d", typ))
		}
		f.Shared = typ == fileShared
		if _, ok := sharedExt(f.Name); ok != f.Shared {
			return nil, pr.Corrupt(fmt.Sprintf("file %q is stored as the wrong type", f.Name))
		}
		limit := uint64(maxInlineFileLen)
		if f.Shared {
			limit = 1 << 50
		}
		size, err := pr.Uvarint(limit, "file size")
		if err != nil {
			return nil, err
		}
		f.Size = int64(size)
		crc, err := pr.Fixed(4, "file checksum", nil)
		if err != nil {
			return nil, err
		}
		f.CRC = binary.LittleEndian.Uint32(crc)
		if f.Shared {
			h, err := pr.Fixed(32, "file hash", nil)
			if err != nil {
				return nil, err
			}
			copy(f.Hash[:], h)
		} else {
			data, err := pr.Fixed(int(size), "file contents", nil)
			if err != nil {
				return nil, err
			}
			f.Data = bytes.Clone(data)
			if crc32.Checksum(f.Data, iox.Castagnoli) != f.CRC {
				return nil, pr.Corrupt(fmt.Sprintf("inline file %q does not match its checksum", f.Name))
			}
		}
		m.Files = append(m.Files, f)
	}
	if end, err := pr.AtEnd(); err != nil {
		return nil, pr.Wrap(err, "manifest")
	} else if !end {
		return nil, pr.Corrupt("bytes after the last file")
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
