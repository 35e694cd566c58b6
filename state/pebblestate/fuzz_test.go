package pebblestate

import (
	"bufio"
	"bytes"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/cairn-data/cairn/internal/iox"

	"github.com/cairn-data/cairn/storage"
)

type testRecord struct {
	del        bool
	key, value []byte
}

func encodeChangelogForTest(recs []testRecord) []byte {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	cw := changelogWriter{w: bw}
	for _, r := range recs {
		if r.del {
			cw.delete(r.key)
		} else {
			cw.put(r.key, r.value)
		}
	}
	bw.Flush()
	return buf.Bytes()
}

// FuzzDecodeChangelog: any payload either decodes to records that
// re-encode to the same bytes (the format is canonical, so nothing decodes
// to data that was not written), or fails with a CorruptError naming the
// object. The seed corpus is in testdata/fuzz/FuzzDecodeChangelog.
func FuzzDecodeChangelog(f *testing.F) {
	f.Add(encodeChangelogForTest([]testRecord{{key: []byte("a"), value: []byte("v")}, {del: true, key: []byte("b")}, {key: []byte("a"), value: []byte{}}}))
	f.Add([]byte{opPut, 0x80})
	f.Fuzz(func(t *testing.T, payload []byte) {
		var recs []testRecord
		err := decodeChangelog(bytes.NewReader(payload), "x.changelog", func(del bool, key, value []byte) error {
			recs = append(recs, testRecord{del, bytes.Clone(key), bytes.Clone(value)})
			return nil
		})
		if err != nil {
			if ce, ok := errors.AsType[*storage.CorruptError](err); !ok || ce.Object != "x.changelog" {
				t.Fatalf("error is not a CorruptError naming the object: %v", err)
			}
			return
		}
		if again := encodeChangelogForTest(recs); !bytes.Equal(again, payload) {
			t.Fatalf("decoded records re-encode to different bytes")
		}
	})
}

func manifestForTest() *checkpointManifest {
	opts := []byte("[Options]\n")
	return &checkpointManifest{Version: 12, Files: []checkpointFile{
		{Name: "000005.sst", Shared: true, Size: 1234, CRC: 0xdeadbeef, Hash: [32]byte{1, 2, 3}},
		{Name: "MANIFEST-000001", Size: 0, CRC: crc32.Checksum(nil, iox.Castagnoli), Data: []byte{}},
		{Name: "OPTIONS-000003", Size: int64(len(opts)), CRC: crc32.Checksum(opts, iox.Castagnoli), Data: opts},
		{Name: "marker.manifest.000001.MANIFEST-000001", CRC: crc32.Checksum(nil, iox.Castagnoli), Data: []byte{}},
	}}
}

// FuzzDecodeManifest: any payload either decodes to a manifest that
// re-encodes to the same bytes and names only plain files, or fails with a
// CorruptError naming the object. The seed corpus is in
// testdata/fuzz/FuzzDecodeManifest.
func FuzzDecodeManifest(f *testing.F) {
	f.Add(encodeManifest(manifestForTest()))
	f.Add(encodeManifest(&checkpointManifest{Version: 1, Files: []checkpointFile{{Name: "../x", Data: []byte{}}}}))
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := decodeManifest(payload, "x.checkpoint")
		if err != nil {
			if ce, ok := errors.AsType[*storage.CorruptError](err); !ok || ce.Object != "x.checkpoint" {
				t.Fatalf("error is not a CorruptError naming the object: %v", err)
			}
			return
		}
		for _, f := range m.Files {
			if !validFileName(f.Name) {
				t.Fatalf("decoded a manifest naming %q", f.Name)
			}
		}
		if again := encodeManifest(m); !bytes.Equal(again, payload) {
			t.Fatalf("decoded manifest re-encodes to different bytes")
		}
	})
}

func TestManifestRoundTrip(t *testing.T) {
	m := manifestForTest()
	got, err := decodeManifest(encodeManifest(m), "x")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(encodeManifest(got), encodeManifest(m)) || got.Version != 12 || len(got.Files) != 4 || got.Files[0].Hash != m.Files[0].Hash {
		t.Fatalf("round trip changed the manifest: %+v", got)
	}
	bad := encodeManifest(&checkpointManifest{Version: 1, Files: []checkpointFile{{Name: "../x", Data: []byte{}}}})
	if _, err := decodeManifest(bad, "x"); !errors.Is(err, storage.ErrCorrupt) {
		t.Fatalf("a manifest naming ../x decoded: %v", err)
	}
}

func TestLocalMetaRoundTrip(t *testing.T) {
	for _, m := range []localMeta{{Identity: [32]byte{9}, Version: 7, Keys: 100}, {Version: 0, Keys: -1}} {
		got, ok := decodeLocalMeta(m.encode())
		if !ok || got != m {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", m, got, ok)
		}
	}
	if _, ok := decodeLocalMeta([]byte("cairn-pebble-1 short")); ok {
		t.Fatal("a truncated meta record decoded")
	}
}
