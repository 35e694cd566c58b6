package dataset

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/internal/iox"
	"github.com/cairn-data/cairn/storage"
)

// IsPartName reports whether base, the last component of an object name
// in a checkpoint's directory, is the name of a part: "part-NNNNN.parquet"
// or ".records" (Checkpoint), or "part-NNNNN-<attempt>.parquet" or
// ".records" (WriteResumable).
func IsPartName(base string) bool {
	rest, ok := strings.CutPrefix(base, partPrefix)
	if !ok {
		return false
	}
	if r, ok := strings.CutSuffix(rest, ".parquet"); ok {
		rest = r
	} else if r, ok := strings.CutSuffix(rest, ".records"); ok {
		rest = r
	} else {
		return false
	}
	num, attempt, hasAttempt := strings.Cut(rest, "-")
	if len(num) < 5 || strings.Trim(num, "0123456789") != "" {
		return false
	}
	return !hasAttempt || (attempt != "" && !strings.ContainsAny(attempt, "/."))
}

// ParseDoneName returns the partition whose completion record base (the
// last component of an object name) is: "part-NNNNN.done".
func ParseDoneName(base string) (int, bool) { return parseDoneName(base) }

// VerifyPart reads the part object name whole and checks it, without
// knowing its record type. With info (from a manifest or a completion
// record), its size and CRC32C must be the recorded ones and, for a
// Parquet part, the row count of its footer the recorded records; without
// info, it must be a whole Parquet file or a sound frame. The records of
// a framed (gob) part are not counted: their type is needed to decode
// them, and the CRC32C already ties the bytes to the record.
//
// Damage is a *storage.CorruptError naming the part; a missing part is an
// error matching storage.ErrNotFound. Safe for concurrent use.
func VerifyPart(ctx context.Context, st storage.Storage, name string, info *PartInfo) (err error) {
	data, err := storage.GetBytes(ctx, st, name)
	if err != nil {
		return err
	}
	if info != nil {
		if int64(len(data)) != info.Bytes {
			return &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("%d bytes, the record says %d", len(data), info.Bytes)}
		}
		if c := crc32.Checksum(data, iox.Castagnoli); c != info.CRC32C {
			return &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("CRC32C %08x, the record says %08x", c, info.CRC32C)}
		}
	}
	if strings.HasSuffix(name, ".records") {
		_, _, err := frame.Decode(data, name, frame.KindRecords, recordsVersion)
		return err
	}
	defer func() {
		if r := recover(); r != nil { // parquet-go panics on some damaged input
			err = &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("parquet: %v", r)}
		}
	}()
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return &storage.CorruptError{Object: name, Offset: -1, Reason: "not a whole Parquet file: " + err.Error()}
	}
	if info != nil && f.NumRows() != info.Records {
		return &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("its footer counts %d rows, the record says %d", f.NumRows(), info.Records)}
	}
	return nil
}
