package frame

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/cairn-data/cairn/storage"
)

func payloadOf(n int) []byte {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 3*ChunkSize + 5} {
		p := payloadOf(n)
		enc := Encode(KindDelta, 1, p)
		got, v, err := Decode(enc, "obj", KindDelta, 1)
		if err != nil {
			t.Fatalf("n=%d: Decode: %v", n, err)
		}
		if v != 1 || !bytes.Equal(got, p) {
			t.Fatalf("n=%d: round trip changed the payload (version %d, %d bytes)", n, v, len(got))
		}
	}
}

func TestWriterHoldsOneChunk(t *testing.T) {
	var out bytes.Buffer
	fw := NewWriter(&out, KindSnapshot, 1)
	block := make([]byte, 1000)
	for range 1000 { // about 1 MB in small writes
		fw.Write(block)
		if pending := fw.buf[chunkHead:]; len(pending) > ChunkSize {
			t.Fatalf("writer buffers %d bytes, more than one chunk", len(pending))
		}
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	if out.Len() < 1000*1000 {
		t.Fatalf("wrote %d bytes, want the whole payload streamed", out.Len())
	}
}

// Every truncation of an object must be reported as corruption, never read
// as a shorter payload.
func TestEveryTruncationIsCorrupt(t *testing.T) {
	enc := Encode(KindDelta, 1, payloadOf(2*ChunkSize+100))
	for cut := 0; cut < len(enc); cut += 1 + cut/64 {
		_, _, err := Decode(enc[:cut], "state/0/0/7.delta", KindDelta, 1)
		var ce *storage.CorruptError
		if !errors.As(err, &ce) || ce.Object != "state/0/0/7.delta" {
			t.Fatalf("truncated to %d of %d bytes: err = %v, want a CorruptError naming the object", cut, len(enc), err)
		}
	}
}

// Every single-bit flip must be detected.
func TestEveryBitFlipIsDetected(t *testing.T) {
	enc := Encode(KindSnapshot, 1, payloadOf(300))
	for i := range enc {
		for bit := range 8 {
			bad := bytes.Clone(enc)
			bad[i] ^= 1 << bit
			if _, _, err := Decode(bad, "x", KindSnapshot, 1); !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("flip of bit %d of byte %d: err = %v, want ErrCorrupt", bit, i, err)
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	enc := Encode(KindDelta, 2, []byte("abc"))
	if _, _, err := Decode(enc, "x", KindSnapshot, 2); !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("wrong kind: err = %v, want ErrCorrupt", err)
	}
	if _, _, err := Decode(enc, "x", KindDelta, 1); !errors.Is(err, storage.ErrFormatVersion) {
		t.Errorf("newer version: err = %v, want ErrFormatVersion", err)
	}
	if _, _, err := Decode(Encode(KindDelta, 0, []byte("abc")), "x", KindDelta, 2); !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("version 0: err = %v, want ErrCorrupt", err)
	}
	if _, _, err := Peek(bytes.NewReader(enc[:4]), "x"); !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("Peek of a truncated header: err = %v, want ErrCorrupt", err)
	}
	flipped := bytes.Clone(enc)
	flipped[4] = byte(KindSnapshot)
	if _, _, err := Peek(bytes.NewReader(flipped), "x"); !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("Peek of a header with a changed kind: err = %v, want ErrCorrupt", err)
	}
	if _, _, err := Decode(append(bytes.Clone(enc), 0), "x", KindDelta, 2); !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("trailing byte: err = %v, want ErrCorrupt", err)
	}
	if _, _, err := Decode([]byte("{\"json\": true, \"not\": \"cairn\"}"), "x", KindDelta, 2); !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("foreign file: err = %v, want ErrCorrupt", err)
	}
}

// A reader returns no payload byte from a chunk that fails its checksum.
func TestNoUnverifiedBytes(t *testing.T) {
	p := payloadOf(ChunkSize + 10)
	enc := Encode(KindDelta, 1, p)
	bad := bytes.Clone(enc)
	bad[headerSize+chunkHead+ChunkSize+chunkHead+3] ^= 0xff // inside the second chunk
	fr, err := NewReader(bytes.NewReader(bad), "x", KindDelta, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(fr)
	if !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	if !bytes.Equal(got, p[:ChunkSize]) {
		t.Fatalf("reader returned %d bytes, want exactly the %d verified ones", len(got), ChunkSize)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(KindDelta, 1, nil))
	f.Add(Encode(KindDelta, 1, []byte("hello")))
	f.Add(Encode(KindSnapshot, 1, payloadOf(70)))
	f.Add([]byte(Magic))
	f.Add(Encode(KindDelta, 1, []byte("hello"), "state/0/0/1.delta store=ab"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := NewReader(bytes.NewReader(data), "fuzz", KindDelta, 1)
		var payload []byte
		if err == nil {
			payload, err = io.ReadAll(fr)
		}
		if err != nil {
			if !errors.Is(err, storage.ErrCorrupt) && !errors.Is(err, storage.ErrFormatVersion) {
				t.Fatalf("error is neither corruption nor version: %v", err)
			}
			return
		}
		// Whatever decodes must be exactly a payload (and identity) that
		// was framed: the same re-framed by the Writer must decode to
		// itself.
		enc := Encode(KindDelta, 1, payload, fr.Identity())
		again, _, err := Decode(enc, "fuzz", KindDelta, 1, fr.Identity())
		if err != nil || !bytes.Equal(again, payload) {
			t.Fatalf("re-encoded payload does not round-trip: %v", err)
		}
	})
}
