package memstate

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"github.com/cairn-data/cairn/storage"
)

func encodeDeltaForTest(ops []change, keys []string) []byte {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	rw := recordWriter{w: bw}
	for i, k := range keys {
		if ops[i].del {
			bw.WriteByte(opDelete)
			rw.str(k)
		} else {
			bw.WriteByte(opPut)
			rw.str(k)
			rw.bytes(ops[i].val)
		}
	}
	bw.Flush()
	return buf.Bytes()
}

func encodeSnapshotForTest(keys []string, vals [][]byte) []byte {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	rw := recordWriter{w: bw}
	for i, k := range keys {
		rw.str(k)
		rw.bytes(vals[i])
	}
	bw.Flush()
	return buf.Bytes()
}

// FuzzDecodeDelta: any payload either decodes to records that re-encode to
// the same bytes (the format is canonical, so nothing decodes to data that
// was not written), or fails with a CorruptError naming the object.
func FuzzDecodeDelta(f *testing.F) {
	f.Add(encodeDeltaForTest([]change{{val: []byte("v")}, {del: true}}, []string{"a", "b"}))
	f.Add(encodeDeltaForTest([]change{{val: []byte{}}, {val: []byte{0xff, 0}}}, []string{"", "\xff"}))
	f.Add([]byte{opPut, 0x80})
	f.Fuzz(func(t *testing.T, payload []byte) {
		var keys []string
		var ops []change
		err := decodeDelta(bytes.NewReader(payload), "x.delta", func(key, value []byte, del bool) error {
			keys = append(keys, string(key))
			ops = append(ops, change{val: value, del: del})
			return nil
		})
		if err != nil {
			var ce *storage.CorruptError
			if !errors.As(err, &ce) || ce.Object != "x.delta" {
				t.Fatalf("error is not a CorruptError naming the object: %v", err)
			}
			return
		}
		if again := encodeDeltaForTest(ops, keys); !bytes.Equal(again, payload) {
			t.Fatalf("decoded records re-encode to different bytes")
		}
	})
}

func FuzzDecodeSnapshot(f *testing.F) {
	f.Add(encodeSnapshotForTest([]string{"a", "b"}, [][]byte{[]byte("1"), {}}))
	f.Add(encodeSnapshotForTest([]string{"b", "a"}, [][]byte{{}, {}})) // out of order: corrupt
	f.Add([]byte{0x05, 'a'})
	f.Fuzz(func(t *testing.T, payload []byte) {
		var keys []string
		var vals [][]byte
		err := decodeSnapshot(bytes.NewReader(payload), "x.snapshot", func(key, value []byte) error {
			keys = append(keys, string(key))
			vals = append(vals, value)
			return nil
		})
		if err != nil {
			var ce *storage.CorruptError
			if !errors.As(err, &ce) || ce.Object != "x.snapshot" {
				t.Fatalf("error is not a CorruptError naming the object: %v", err)
			}
			return
		}
		if again := encodeSnapshotForTest(keys, vals); !bytes.Equal(again, payload) {
			t.Fatalf("decoded records re-encode to different bytes")
		}
	})
}
