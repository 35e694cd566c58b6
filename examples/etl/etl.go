package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/pipeline"
)

// Order is one line of DIR/orders/*.jsonl. Amount is in minor units (cents),
// an integer, so that sums are exact whatever the order of addition.
type Order struct {
	OrderID  int64  `json:"order_id" parquet:"order_id"`
	Customer string `json:"customer" parquet:"customer"`
	Amount   int64  `json:"amount" parquet:"amount"`
	Day      string `json:"day" parquet:"day"`
}

// Customer is one line of DIR/customers/*.jsonl.
type Customer struct {
	Customer string `json:"customer" parquet:"customer"`
	Region   string `json:"region" parquet:"region"`
}

// Enriched is an order with its customer's region.
type Enriched struct {
	OrderID  int64  `parquet:"order_id"`
	Customer string `parquet:"customer"`
	Region   string `parquet:"region"`
	Day      string `parquet:"day"`
	Amount   int64  `parquet:"amount"`
}

// Daily is one row of the final output: per region and day, the number of
// orders and the sum of their amounts.
type Daily struct {
	Region string `parquet:"region" json:"region"`
	Day    string `parquet:"day" json:"day"`
	Orders int64  `parquet:"orders" json:"orders"`
	Amount int64  `parquet:"amount" json:"amount"`
}

// config is what the flags set.
type config struct {
	input, output, checkpoint string
	fresh, keep               bool
	partitions                int
	logger                    *slog.Logger
	out                       *os.File // progress bars (if a terminal) and the summary
}

// Counters of the orders stage.
const (
	counterMalformed = "malformed"
	counterNegative  = "negative_amount"
)

// build declares the pipeline: orders and customers are read, enriched
// joins them, daily aggregates per region and day and is published.
func build(c config) (*pipeline.Pipeline, error) {
	p, err := pipeline.New("etl", pipeline.Options{
		Checkpoint:        c.checkpoint,
		Fresh:             c.fresh,
		KeepIntermediates: c.keep,
		Dataset:           dataset.Options{Partitions: c.partitions},
		Output:            c.out,
		Logger:            c.logger,
	})
	if err != nil {
		return nil, err
	}
	ordersGlob := filepath.Join(c.input, "orders", "*.jsonl")
	customersGlob := filepath.Join(c.input, "customers", "*.jsonl")

	orders := pipeline.Source(p, "orders", pipeline.StageOptions{Version: "1", Files: []string{ordersGlob}},
		func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[Order], error) {
			files, err := filepath.Glob(ordersGlob)
			if err != nil {
				return nil, err
			}
			sort.Strings(files)
			// One partition a file: a file is the unit of work lost.
			return dataset.FromFunc(s, "ReadOrders "+ordersGlob, len(files), func(ctx context.Context, part int, emit func(Order) error) error {
				return readOrders(ctx, files[part], c.logger, emit)
			}), nil
		})
	customers := pipeline.Source(p, "customers", pipeline.StageOptions{Version: "1", Files: []string{customersGlob}},
		func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[Customer], error) {
			return dataset.ReadJSONL[Customer](s, customersGlob, dataset.ReadOptions{})
		})
	// The partition counts are parameters: a run with another -partitions
	// recomputes the two stages instead of restoring them.
	shuffled := pipeline.StageOptions{Version: "1", Params: map[string]int{"partitions": c.partitions}}
	enriched := pipeline.Combine(p, "enriched", shuffled, orders, customers,
		func(ctx context.Context, o *dataset.Dataset[Order], cu *dataset.Dataset[Customer]) (*dataset.Dataset[Enriched], error) {
			byCustomer := dataset.Map(o, func(o Order) dataset.Pair[string, Order] { return dataset.KV(o.Customer, o) })
			regions := dataset.Map(cu, func(c Customer) dataset.Pair[string, string] { return dataset.KV(c.Customer, c.Region) })
			joined := dataset.Join(byCustomer, regions, c.partitions)
			return dataset.Map(joined, func(j dataset.Pair[string, dataset.Joined[Order, string]]) Enriched {
				o := j.Value.Left
				return Enriched{OrderID: o.OrderID, Customer: o.Customer, Region: j.Value.Right, Day: o.Day, Amount: o.Amount}
			}), nil
		})
	daily := pipeline.Then(p, "daily", shuffled, enriched,
		func(ctx context.Context, e *dataset.Dataset[Enriched]) (*dataset.Dataset[Daily], error) {
			type key struct{ Region, Day string }
			kv := dataset.Map(e, func(e Enriched) dataset.Pair[key, Daily] {
				return dataset.KV(key{e.Region, e.Day}, Daily{Region: e.Region, Day: e.Day, Orders: 1, Amount: e.Amount})
			})
			sums := dataset.ReduceByKey(kv, func(a, b Daily) Daily {
				a.Orders += b.Orders
				a.Amount += b.Amount
				return a
			}, c.partitions)
			return dataset.Map(sums, func(p dataset.Pair[key, Daily]) Daily { return p.Value }), nil
		})
	pipeline.Publish(p, daily, filepath.Join(c.output, "daily"), dataset.WriteOptions{})
	return p, nil
}

// readOrders reads one orders file. Malformed lines (not JSON, a missing
// field, a day that is not YYYY-MM-DD) and lines with a negative amount
// are dropped and counted; the first few of each file are logged with
// their file and line.
func readOrders(ctx context.Context, file string, log *slog.Logger, emit func(Order) error) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	logged := 0
	bad := func(line int, counter, why string) {
		pipeline.Count(ctx, counter, 1)
		if logged < 3 {
			log.Warn("orders: dropped a line", "file", file, "line", line, "reason", why)
			logged++
		}
	}
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var raw struct {
			OrderID  *int64  `json:"order_id"`
			Customer *string `json:"customer"`
			Amount   *int64  `json:"amount"`
			Day      *string `json:"day"`
		}
		if err := json.Unmarshal(b, &raw); err != nil {
			bad(line, counterMalformed, err.Error())
			continue
		}
		switch {
		case raw.OrderID == nil || raw.Customer == nil || raw.Amount == nil || raw.Day == nil:
			bad(line, counterMalformed, "a field of order_id, customer, amount, day is missing")
			continue
		case !validDay(*raw.Day):
			bad(line, counterMalformed, fmt.Sprintf("day %q is not YYYY-MM-DD", *raw.Day))
			continue
		case *raw.Amount < 0:
			bad(line, counterNegative, fmt.Sprintf("amount %d is negative", *raw.Amount))
			continue
		}
		if err := emit(Order{OrderID: *raw.OrderID, Customer: *raw.Customer, Amount: *raw.Amount, Day: *raw.Day}); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	return nil
}

func validDay(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil
}

// generate writes sample input: orders in files of orders/, customers in
// customers/, with about one line in 500 malformed and one in 200 with a
// negative amount. The same seed gives the same files.
func generate(dir string, orders, files int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	const customers = 5000
	regions := []string{"EU", "US", "APAC", "LATAM", "MEA"}
	for _, sub := range []string{"orders", "customers"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	var cb bytes.Buffer
	for i := range customers {
		// Every 50th customer has no region record: its orders drop out of
		// the inner join.
		if i%50 == 49 {
			continue
		}
		fmt.Fprintf(&cb, `{"customer": "c%d", "region": %q}`+"\n", i, regions[rng.IntN(len(regions))])
	}
	if err := writeFileAtomic(filepath.Join(dir, "customers", "customers.jsonl"), cb.Bytes()); err != nil {
		return err
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	id := int64(0)
	for f := range files {
		var b bytes.Buffer
		n := orders / files
		if f < orders%files {
			n++
		}
		for range n {
			id++
			day := start.AddDate(0, 0, rng.IntN(28)).Format(time.DateOnly)
			amount := int64(rng.IntN(100000))
			switch r := rng.IntN(1000); {
			case r < 2:
				fmt.Fprintf(&b, `{"order_id": %d, "customer": "c%d", "amount": `+"\n", id, rng.IntN(customers))
				continue
			case r < 4:
				fmt.Fprintf(&b, `{"order_id": %d, "amount": %d, "day": %q}`+"\n", id, amount, day)
				continue
			case r < 9:
				amount = -amount - 1
			}
			fmt.Fprintf(&b, `{"order_id": %d, "customer": "c%d", "amount": %d, "day": %q}`+"\n", id, rng.IntN(customers), amount, day)
		}
		if err := writeFileAtomic(filepath.Join(dir, "orders", fmt.Sprintf("orders-%04d.jsonl", f)), b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
