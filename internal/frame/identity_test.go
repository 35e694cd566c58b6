package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/cairn-data/cairn/internal/iox"

	"github.com/cairn-data/cairn/storage"
)

func TestIdentityRoundTrip(t *testing.T) {
	for _, n := range []int{0, 5, ChunkSize + 3} {
		p := payloadOf(n)
		id := Identity("state/0/1/25.delta store=3f9c")
		enc := Encode(KindDelta, 2, p, id)
		fr, err := NewReader(bytes.NewReader(enc), "state/0/1/25.delta", KindDelta, 2)
		if err != nil {
			t.Fatal(err)
		}
		if fr.Identity() != id {
			t.Fatalf("identity = %q, want %q", fr.Identity(), id)
		}
		got, err := io.ReadAll(fr)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("n=%d: payload changed or unreadable: %v", n, err)
		}
		if _, _, err := Decode(enc, "state/0/1/25.delta", KindDelta, 2, id); err != nil {
			t.Fatalf("Decode with the right identity: %v", err)
		}
	}
}

// The copies the identity exists for: an object read under a name, or for
// an owner, other than its own is refused, naming the object, what it holds
// and what was expected.
func TestIdentityMismatchIsRefused(t *testing.T) {
	enc := Encode(KindDelta, 2, []byte("abc"), "state/0/0/24.delta store=aaaa")
	for _, want := range []Identity{"state/0/0/25.delta store=aaaa", "state/0/0/24.delta store=bbbb", "state/0/1/24.delta store=aaaa"} {
		_, _, err := Decode(enc, "state/0/0/25.delta", KindDelta, 2, want)
		var ce *storage.CorruptError
		if !errors.As(err, &ce) || ce.Object != "state/0/0/25.delta" {
			t.Fatalf("want %q: err = %v, want a CorruptError naming state/0/0/25.delta", want, err)
		}
		for _, s := range []string{"state/0/0/24.delta store=aaaa", string(want), "copied"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
	}
}

// Objects written before identities record none and read as before, with
// or without an identity to check.
func TestNoIdentityIsAccepted(t *testing.T) {
	enc := Encode(KindDelta, 1, []byte("abc"))
	if !bytes.Equal(enc[6:8], []byte{0, 0}) {
		t.Fatalf("an object without identity has flags %x, want 0 (the format before identities)", enc[6:8])
	}
	if p, _, err := Decode(enc, "x", KindDelta, 2, "x store=1"); err != nil || string(p) != "abc" {
		t.Fatalf("Decode = %q, %v", p, err)
	}
	if err := CheckIdentity("x", "", "x"); err != nil {
		t.Fatal(err)
	}
}

func TestIdentityDamageIsDetected(t *testing.T) {
	enc := Encode(KindSnapshot, 2, payloadOf(100), "state/3/7/10.snapshot store=0123456789abcdef")
	for i := range enc {
		for bit := range 8 {
			bad := bytes.Clone(enc)
			bad[i] ^= 1 << bit
			if _, _, err := Decode(bad, "x", KindSnapshot, 2); !errors.Is(err, storage.ErrCorrupt) {
				t.Fatalf("flip of bit %d of byte %d: err = %v, want ErrCorrupt", bit, i, err)
			}
		}
	}
	for cut := range len(enc) {
		if _, _, err := Decode(enc[:cut], "x", KindSnapshot, 2); !errors.Is(err, storage.ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: err = %v, want ErrCorrupt", cut, err)
		}
	}
}

func TestUnknownFlagsAreRefused(t *testing.T) {
	var buf bytes.Buffer
	fw := NewWriter(&buf, KindDelta, 1)
	fw.Close()
	enc := buf.Bytes()
	enc[7] = 0x80 // a flag no build knows, with a valid header checksum
	binary.LittleEndian.PutUint32(enc[8:], crc32.Checksum(enc[:8], iox.Castagnoli))
	if _, _, err := Decode(enc, "x", KindDelta, 1); !errors.Is(err, storage.ErrCorrupt) || !strings.Contains(err.Error(), "flags") {
		t.Fatalf("err = %v, want ErrCorrupt about the flags", err)
	}
}

func TestWriterRefusesBadIdentities(t *testing.T) {
	for name, ids := range map[string][]Identity{
		"two":      {"a", "b"},
		"too long": {Identity(strings.Repeat("x", MaxIdentity+1))},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("NewWriter accepted it")
				}
			}()
			NewWriter(io.Discard, KindDelta, 1, ids...)
		})
	}
}
