package dataset

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func newTestSession(t testing.TB, opts Options) *Session {
	t.Helper()
	s, err := NewSession(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func TestNarrowTransformations(t *testing.T) {
	ctx := context.Background()
	s := newTestSession(t, Options{Parallelism: 3})
	nums := make([]int, 100)
	for i := range nums {
		nums[i] = i
	}
	d := FromSlice(s, nums, 7)
	sq := Map(d.Filter(func(x int) bool { return x%2 == 0 }), func(x int) int { return x * x })
	got, err := sq.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for i := 0; i < 100; i += 2 {
		want = append(want, i*i)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Collect = %v, want %v", got, want)
	}
	n, _ := Union(d, d).Count(ctx)
	if n != 200 {
		t.Fatalf("Union count = %d, want 200", n)
	}
	sum, ok, _ := d.Reduce(ctx, func(a, b int) int { return a + b })
	if !ok || sum != 4950 {
		t.Fatalf("Reduce = %d, %v", sum, ok)
	}
	if depth := sq.LineageDepth(); depth != 3 {
		t.Fatalf("LineageDepth = %d, want 3\n%s", depth, sq.Explain())
	}
	if !strings.HasPrefix(sq.Explain(), "Map [7 partitions]\n+- Filter [7 partitions]\n   +- FromSlice 100 records [7 partitions]") {
		t.Fatalf("Explain:\n%s", sq.Explain())
	}
}

func TestKeyedOperationsAgainstOracle(t *testing.T) {
	ctx := context.Background()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	var recs []Pair[string, int]
	for range 5000 {
		recs = append(recs, KV(fmt.Sprint("k", rng.IntN(300)), rng.IntN(100)))
	}
	s := newTestSession(t, Options{Parallelism: 4})
	d := FromSlice(s, recs, 6)
	sums := map[string]int{}
	counts := map[string]int{}
	for _, r := range recs {
		sums[r.Key] += r.Value
		counts[r.Key]++
	}
	red, err := ReduceByKey(d, func(a, b int) int { return a + b }, 5).Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, r := range red {
		if _, dup := got[r.Key]; dup {
			t.Fatalf("ReduceByKey emitted %s twice", r.Key)
		}
		got[r.Key] = r.Value
	}
	if !maps.Equal(got, sums) {
		t.Fatal("ReduceByKey differs from the oracle")
	}
	groups, _ := GroupByKey(d, 3).Collect(ctx)
	for _, g := range groups {
		if len(g.Value) != counts[g.Key] {
			t.Fatalf("GroupByKey %s has %d values, want %d", g.Key, len(g.Value), counts[g.Key])
		}
	}
	// Determinism: a second run gives the same partitions in the same order.
	again, _ := ReduceByKey(FromSlice(s, recs, 6), func(a, b int) int { return a + b }, 5).Collect(ctx)
	if !slices.Equal(red, again) {
		t.Fatal("ReduceByKey is not deterministic across runs")
	}
	names := FromSlice(s, []Pair[string, string]{KV("k1", "one"), KV("k2", "two"), KV("k1", "uno")}, 2)
	j, _ := Join(FromSlice(s, []Pair[string, int]{KV("k1", 1), KV("k3", 3)}, 2), names, 4).Collect(ctx)
	if len(j) != 2 || j[0].Value.Right != "one" || j[1].Value.Right != "uno" {
		t.Fatalf("Join = %+v", j)
	}
	lj, _ := LeftOuterJoin(FromSlice(s, []Pair[string, int]{KV("k1", 1), KV("k3", 3)}, 2), names, 4).Collect(ctx)
	matched := 0
	for _, r := range lj {
		if r.Value.Matched {
			matched++
		} else if r.Key != "k3" {
			t.Fatalf("unmatched %+v", r)
		}
	}
	if len(lj) != 3 || matched != 2 {
		t.Fatalf("LeftOuterJoin = %+v", lj)
	}
	dist, _ := Distinct(Map(d, func(p Pair[string, int]) string { return p.Key }), 4).Count(ctx)
	if dist != int64(len(sums)) {
		t.Fatalf("Distinct count = %d, want %d", dist, len(sums))
	}
	sorted, _ := SortBy(d, func(p Pair[string, int]) int { return p.Value }, true, 4).Collect(ctx)
	if len(sorted) != len(recs) || !slices.IsSortedFunc(sorted, func(a, b Pair[string, int]) int { return a.Value - b.Value }) {
		t.Fatal("SortBy output is not sorted")
	}
	rp, _ := d.Repartition(3).Collect(ctx)
	if len(rp) != len(recs) {
		t.Fatalf("Repartition lost records: %d of %d", len(rp), len(recs))
	}
}

func TestActionStopsWhenCancelled(t *testing.T) {
	s := newTestSession(t, Options{Parallelism: 2})
	ctx, cancel := context.WithCancel(context.Background())
	d := Map(FromSlice(s, make([]int, 1_000_000), 4), func(x int) int {
		cancel()
		return x
	})
	if _, err := d.Count(ctx); err != context.Canceled {
		t.Fatalf("Count after cancel: err = %v, want context.Canceled", err)
	}
}

// A function given a partition sees the partition's failure in its loop,
// before it can act on a partial input.
func TestPartitionFunctionsSeeInputErrors(t *testing.T) {
	ctx := context.Background()
	s := newTestSession(t, Options{Parallelism: 1})
	boom := fmt.Errorf("record 5 is bad")
	d := MapErr(FromSlice(s, make([]int, 10), 1), func(x int) (int, error) {
		if x == 0 {
			x = -1
		}
		return x, nil
	})
	n := 0
	failing := MapErr(d, func(x int) (int, error) {
		if n++; n == 5 {
			return 0, boom
		}
		return x, nil
	})
	var sawErr error
	actedOnPartial := false
	err := failing.ForEachPartition(ctx, func(ctx context.Context, part int, recs iter.Seq2[int, error]) error {
		count := 0
		for _, err := range recs {
			if err != nil {
				sawErr = err
				return err
			}
			count++
		}
		actedOnPartial = true // would commit a partial partition
		return nil
	})
	if !errors.Is(err, boom) || !errors.Is(sawErr, boom) || actedOnPartial {
		t.Fatalf("err = %v, seen in loop = %v, acted on partial input = %v", err, sawErr, actedOnPartial)
	}
	// The action fails even if the function ignores the error.
	n = 0
	err = failing.ForEachPartition(ctx, func(ctx context.Context, part int, recs iter.Seq2[int, error]) error {
		for range recs {
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("ignored input error: err = %v, want %v", err, boom)
	}
}

// A dataset used twice per iteration (as PageRank's ranks are) doubles the
// number of lineage paths every iteration; Explain and LineageDepth must
// stay linear in the number of operations.
func TestLineageOfSharedDatasetsStaysSmall(t *testing.T) {
	s := newTestSession(t, Options{Parallelism: 1})
	d := FromSlice(s, []Pair[int, int]{KV(1, 1)}, 1)
	for range 60 {
		d = Map(Join(d, d, 1), func(p Pair[int, Joined[int, int]]) Pair[int, int] { return KV(p.Key, p.Value.Left+p.Value.Right) })
	}
	if got := d.LineageDepth(); got != 121 {
		t.Fatalf("LineageDepth = %d, want 121", got)
	}
	text := d.Explain()
	if lines := strings.Count(text, "\n"); lines > 200 {
		t.Fatalf("Explain printed %d lines for 121 operations: shared sub-plans are repeated", lines)
	}
	if !strings.Contains(text, "(#1, shown above)") {
		t.Fatalf("Explain does not refer back to a shared sub-plan:\n%s", text[:min(len(text), 500)])
	}
}

// The partition of a key is part of the durable format (it decides the
// state store a key lives in): these values must never change.
func TestStableHashIsStable(t *testing.T) {
	type composite struct {
		Start int64
		Key   string
	}
	cases := []struct {
		name string
		got  uint64
		want uint64
	}{
		{"string", stableHash("user-17"), stableHashGolden["string"]},
		{"int64", stableHash(int64(42)), stableHashGolden["int64"]},
		{"struct", stableHash(composite{60_000, "u1"}), stableHashGolden["struct"]},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("stableHash(%s) = %#x, want %#x: changing it moves keys to other partitions and breaks existing state", c.name, c.got, c.want)
		}
	}
	if stableHash(composite{1, "a"}) == stableHash(composite{1, "b"}) || stableHash(composite{1, "a"}) == stableHash(composite{2, "a"}) {
		t.Error("struct fields do not all count in the hash")
	}
}
