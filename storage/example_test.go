package storage_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairn-data/cairn/storage"
)

// Two writers race to create the same log entry; exactly one wins.
func ExamplePutOptions_ifAbsent() {
	ctx := context.Background()
	s, _ := storage.Open(ctx, "mem://example-ifabsent")
	err := storage.PutBytes(ctx, s, "offsets/7", []byte("batch 7 by writer A"), storage.PutOptions{IfAbsent: true})
	fmt.Println("writer A:", err)
	err = storage.PutBytes(ctx, s, "offsets/7", []byte("batch 7 by writer B"), storage.PutOptions{IfAbsent: true})
	fmt.Println("writer B refused:", errors.Is(err, storage.ErrExists))
	data, _ := storage.GetBytes(ctx, s, "offsets/7")
	fmt.Println(string(data))
	// Output:
	// writer A: <nil>
	// writer B refused: true
	// batch 7 by writer A
}

func ExampleStorage_List() {
	ctx := context.Background()
	s := storage.NewMem()
	for _, name := range []string{"commits/0", "offsets/1", "offsets/0"} {
		storage.PutBytes(ctx, s, name, []byte("{}"), storage.PutOptions{})
	}
	objs, _ := s.List(ctx, "offsets/")
	for _, o := range objs {
		fmt.Println(o.Name, o.Size)
	}
	// Output:
	// offsets/0 2
	// offsets/1 2
}
