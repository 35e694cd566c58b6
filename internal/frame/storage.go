package frame

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/cairn-data/cairn/internal/iox"

	"github.com/cairn-data/cairn/storage"
)

// Put writes a framed object: write produces the payload, streamed to the
// storage chunk by chunk. With an identity (at most one), the object
// records it (see NewWriter).
func Put(ctx context.Context, s storage.Storage, name string, kind Kind, version uint8, opts storage.PutOptions, write func(w io.Writer) error, id ...Identity) error {
	return storage.PutStream(ctx, s, name, opts, func(w io.Writer) error {
		fw := NewWriter(w, kind, version, id...)
		if err := write(fw); err != nil {
			return err
		}
		return fw.Close()
	})
}

// PutBytes writes a framed object with a payload held in memory. With an
// identity (at most one), the object records it (see NewWriter).
func PutBytes(ctx context.Context, s storage.Storage, name string, kind Kind, version uint8, payload []byte, opts storage.PutOptions, id ...Identity) error {
	var buf bytes.Buffer
	buf.Grow(len(payload) + headerSize + endSize + chunkHead*(len(payload)/ChunkSize+1) + identHead + MaxIdentity + identTail)
	fw := NewWriter(&buf, kind, version, id...)
	fw.Write(payload)
	fw.Close()
	return storage.PutBytes(ctx, s, name, buf.Bytes(), opts)
}

// Encode returns the framed bytes of a payload, recording the identity if
// one is given (at most one).
func Encode(kind Kind, version uint8, payload []byte, id ...Identity) []byte {
	var buf bytes.Buffer
	fw := NewWriter(&buf, kind, version, id...)
	fw.Write(payload)
	fw.Close()
	return buf.Bytes()
}

// ObjectReader is a Reader over an object opened from storage.
type ObjectReader struct {
	*Reader
	rc io.ReadCloser
}

// Close closes the underlying object.
func (o *ObjectReader) Close() error { return o.rc.Close() }

// Get opens a framed object for streaming reads. The caller must Close it.
// With an identity want (at most one), an object that records another
// identity is refused (see Reader.CheckIdentity).
func Get(ctx context.Context, s storage.Storage, name string, kind Kind, maxVersion uint8, want ...Identity) (*ObjectReader, error) {
	rc, err := s.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	fr, err := NewReader(rc, name, kind, maxVersion)
	if err == nil && len(want) > 0 {
		err = fr.CheckIdentity(oneIdentity(want))
	}
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &ObjectReader{Reader: fr, rc: rc}, nil
}

// GetBytes reads a whole framed object and returns its verified payload and
// format version. For small objects. With an identity want (at most one),
// an object that records another identity is refused.
func GetBytes(ctx context.Context, s storage.Storage, name string, kind Kind, maxVersion uint8, want ...Identity) ([]byte, uint8, error) {
	or, err := Get(ctx, s, name, kind, maxVersion, want...)
	if err != nil {
		return nil, 0, err
	}
	defer or.Close()
	data, err := io.ReadAll(or)
	if err != nil {
		return nil, 0, err
	}
	return data, or.Version(), nil
}

// Decode verifies framed bytes held in memory and returns the payload.
// With an identity want (at most one), an object that records another
// identity is refused.
func Decode(data []byte, object string, kind Kind, maxVersion uint8, want ...Identity) ([]byte, uint8, error) {
	fr, err := NewReader(bytes.NewReader(data), object, kind, maxVersion)
	if err == nil && len(want) > 0 {
		err = fr.CheckIdentity(oneIdentity(want))
	}
	if err != nil {
		return nil, 0, err
	}
	payload, err := io.ReadAll(fr)
	if err != nil {
		return nil, 0, err
	}
	return payload, fr.Version(), nil
}

// Peek reads only the header of an object and reports its kind and
// version, for tools that inspect objects of any kind.
func Peek(r io.Reader, object string) (Kind, uint8, error) {
	var h [headerSize]byte
	if n, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, 0, &storage.CorruptError{Object: object, Offset: int64(n), Reason: fmt.Sprintf("truncated: %d bytes, too short for the %d-byte header", n, headerSize)}
		}
		return 0, 0, fmt.Errorf("read %s: %w", object, err)
	}
	fr := &Reader{object: object}
	if string(h[:4]) != Magic {
		return 0, 0, fr.corrupt(0, fmt.Sprintf("not a cairn object: starts with %q", h[:4]))
	}
	if binary.LittleEndian.Uint32(h[8:]) != crc32.Checksum(h[:8], iox.Castagnoli) {
		return 0, 0, fr.corrupt(8, "header checksum mismatch")
	}
	return Kind(h[4]), h[5], nil
}

// PutJSON writes v, marshalled as JSON, as a framed object of the kind
// and version given, recording the identity if one is given (at most one).
// It is the one way cairn writes its small JSON records (metadata, log
// entries, manifests).
func PutJSON(ctx context.Context, s storage.Storage, name string, kind Kind, version uint8, v any, opts storage.PutOptions, id ...Identity) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return PutBytes(ctx, s, name, kind, version, payload, opts, id...)
}

// GetJSON reads a framed JSON object written by PutJSON into v and returns
// its format version. A payload that is not valid JSON for v is a
// *storage.CorruptError naming the object. With an identity want (at most
// one), an object that records another identity is refused.
func GetJSON(ctx context.Context, s storage.Storage, name string, kind Kind, maxVersion uint8, v any, want ...Identity) (uint8, error) {
	payload, version, err := GetBytes(ctx, s, name, kind, maxVersion, want...)
	if err != nil {
		return 0, err
	}
	return version, DecodeJSON(name, payload, v)
}

// DecodeJSON unmarshals the payload of object into v; invalid JSON is a
// *storage.CorruptError naming the object.
func DecodeJSON(object string, payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return &storage.CorruptError{Object: object, Offset: -1, Reason: "payload is not valid JSON: " + err.Error()}
	}
	return nil
}
