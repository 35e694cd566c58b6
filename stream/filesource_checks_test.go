package stream

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/storage"
)

// FileSourceOptions.Required and AllowInvalidUTF8 reach the decoder: an
// untagged type gets its required fields checked, and invalid UTF-8 is a
// bad record unless allowed.
func TestFileSourceRequiredAndInvalidUTF8Options(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := "{\"User\":\"a\",\"Amount\":1}\n{\"Amount\":2}\n{\"User\":\"b\xff\",\"Amount\":3}\n"
	if err := os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	read := func(opts FileSourceOptions) ([]click, error) {
		opts.Format, opts.Partitions = "jsonl", 1
		src, err := NewFileSource[click](dir, opts)
		if err != nil {
			return nil, err
		}
		if err := src.Attach(ctx, storage.NewMem(), "sources/0"); err != nil {
			return nil, err
		}
		if _, err := src.Available(ctx); err != nil {
			return nil, err
		}
		var got []click
		err = src.Read(ctx, 0, 0, 1, func(c click) error { got = append(got, c); return nil })
		return got, err
	}
	var re *dataset.RecordError
	if _, err := read(FileSourceOptions{Required: []string{"User"}}); !errors.As(err, &re) || re.Line != 2 || re.Column != "User" {
		t.Fatalf("Required User: err = %v; want a bad record at line 2, column User", err)
	}
	if _, err := read(FileSourceOptions{}); !errors.As(err, &re) || re.Line != 3 {
		t.Fatalf("invalid UTF-8: err = %v; want a bad record at line 3", err)
	}
	got, err := read(FileSourceOptions{AllowInvalidUTF8: true})
	if err != nil || len(got) != 3 || got[2].User != "b\uFFFD" {
		t.Fatalf("AllowInvalidUTF8: got %+v, %v; want 3 records, the last with U+FFFD", got, err)
	}
}
