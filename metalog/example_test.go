package metalog_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/storage"
)

func ExampleOpen() {
	ctx := context.Background()
	s := storage.NewMem()

	lease, err := metalog.AcquireLease(ctx, s, metalog.LeaseOptions{Owner: "query clicks"})
	if err != nil {
		panic(err)
	}
	defer lease.Close(ctx)
	_, err = metalog.AcquireLease(ctx, s, metalog.LeaseOptions{})
	fmt.Println("second process refused:", errors.Is(err, metalog.ErrLeaseHeld))

	offsets, err := metalog.Open(ctx, s, "offsets")
	if err != nil {
		panic(err)
	}
	for batch := int64(0); batch < 5; batch++ {
		entry := fmt.Sprintf(`{"clicks-0":%d}`, batch*100)
		if err := offsets.Add(ctx, batch, []byte(entry)); err != nil {
			panic(err)
		}
	}
	if err := offsets.Purge(ctx, 3); err != nil { // keep batches 3 and 4
		panic(err)
	}

	// A restart resumes from the latest entry.
	reopened, err := metalog.Open(ctx, s, "offsets")
	if err != nil {
		panic(err)
	}
	first, _ := reopened.Earliest()
	last, entry, err := reopened.LatestEntry(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("entries %d to %d, latest %s\n", first, last, entry)

	// A second writer of one batch is refused.
	err = offsets.Add(ctx, 5, []byte(`{"clicks-0":500}`))
	fmt.Println("first writer:", err)
	err = reopened.Add(ctx, 5, []byte(`{"clicks-0":500}`))
	fmt.Println("second writer refused:", errors.Is(err, metalog.ErrConcurrentWriter))
	// Output:
	// second process refused: true
	// entries 3 to 4, latest {"clicks-0":400}
	// first writer: <nil>
	// second writer refused: true
}
