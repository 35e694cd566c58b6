package stream

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
)

type session struct {
	User   string
	Events int64
	Start  time.Time
	End    time.Time
}

type sessionState struct {
	Events int64     `json:"events"`
	Start  time.Time `json:"start"`
	Last   time.Time `json:"last"`
}

// sessions closes a user's session 30 s of event time after its last event.
func sessions(b *Batch, in *dataset.Dataset[event]) (*dataset.Dataset[session], error) {
	in, err := WithWatermark(b, 1, in, func(e event) time.Time { return e.TS }, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return FlatMapGroupsWithState(b, 2, in, EventTimeTimeout, func(e event) string { return e.User },
		func(user string, evs []event, gs *GroupState[sessionState]) []session {
			if gs.HasTimedOut() {
				s, _ := gs.Get()
				gs.Remove()
				return []session{{user, s.Events, s.Start, s.Last}}
			}
			s, ok := gs.Get()
			for _, e := range evs {
				if !ok || e.TS.Before(s.Start) {
					s.Start = e.TS
				}
				if e.TS.After(s.Last) {
					s.Last = e.TS
				}
				s.Events++
				ok = true
			}
			gs.Update(s)
			gs.SetTimeoutAt(s.Last.Add(30 * time.Second))
			return nil
		}, state.StringCodec{}, state.JSONCodec[sessionState]{})
}

func TestSessionsCloseOnEventTimeTimeout(t *testing.T) {
	ctx := context.Background()
	src := NewMemorySource[event]("events", 1)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	// a: one session of 3 events (0..20 s), then another at 200 s;
	// b: one event at 5 s. Events at 100..300 s move the watermark on.
	src.Add(0, event{"a", at(0), 1}, event{"b", at(5), 1}, event{"a", at(10), 1}, event{"a", at(20), 1})
	for s := 100; s <= 300; s += 50 {
		src.Add(0, event{"clock", at(s), 0})
	}
	src.Add(0, event{"a", at(200), 1})
	opts := testOptions(storage.NewMem())
	opts.MaxOffsetsPerPartition = 2
	opts.Trigger = Trigger{Drain: true}
	sink := NewMemorySink[session]("out")
	q, err := Start(ctx, src, sessions, sink, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(ctx)
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, s := range sink.All() {
		if s.User != "clock" {
			got[fmt.Sprintf("%s@%s", s.User, s.Start.Format("15:04:05"))] = s.Events
		}
	}
	want := map[string]int64{"a@00:00:00": 3, "b@00:00:05": 1, "a@00:03:20": 1}
	if !maps.Equal(got, want) {
		t.Fatalf("sessions = %v\nwant %v", got, want)
	}
	// The first sessions closed before the drain, by the watermark alone.
	first := sink.Batches()[0]
	for _, id := range sink.Batches()[:len(sink.Batches())-1] {
		if len(sink.Batch(id)) > 0 {
			first = -1
		}
	}
	if first != -1 {
		t.Fatal("no session closed before the drain batch: timeouts did not follow the watermark")
	}
}
