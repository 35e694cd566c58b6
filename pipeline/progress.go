package pipeline

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/cairn-data/cairn/dataset"
)

// progress shows partitions as they complete: a bar per stage on a
// terminal, and a structured event per partition in the log.
type progress struct {
	mu       sync.Mutex
	tty      io.Writer // nil unless Output is a terminal
	log      *slog.Logger
	stage    string
	total    int
	done     int
	rows     int64
	bytes    int64
	drawn    bool
	lastDraw time.Time
}

func newProgress(out io.Writer, log *slog.Logger) *progress {
	p := &progress{log: log}
	if f, ok := out.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = f
		}
	}
	return p
}

func (p *progress) start(stage string, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stage, p.total, p.done, p.rows, p.bytes, p.drawn = stage, total, 0, 0, 0, false
	p.draw(true)
}

func (p *progress) partition(stage string, pd dataset.PartDone, computed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.rows += pd.Records
	p.bytes += pd.Bytes
	if computed {
		p.log.Info("partition stored", "stage", stage, "partition", pd.Partition, "rows", pd.Records, "bytes", pd.Bytes,
			"elapsed", pd.Elapsed().Round(time.Millisecond), "done", p.done, "total", p.total)
	} else {
		p.log.Debug("partition restored", "stage", stage, "partition", pd.Partition, "rows", pd.Records, "done", p.done, "total", p.total)
	}
	p.draw(p.done == p.total)
}

// finish ends the stage's bar line.
func (p *progress) finish(stage string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty != nil && p.drawn {
		p.draw(true)
		fmt.Fprintln(p.tty)
	}
	p.drawn = false
}

// draw redraws the bar, at most ten times a second unless forced.
func (p *progress) draw(force bool) {
	if p.tty == nil || (!force && time.Since(p.lastDraw) < 100*time.Millisecond) {
		return
	}
	const width = 24
	fill := 0
	if p.total > 0 {
		fill = p.done * width / p.total
	}
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	fmt.Fprintf(p.tty, "\r  %-12s [%s] %d/%d partitions  %s rows  %s", p.stage, bar, p.done, p.total, count(p.rows), bytesString(p.bytes))
	p.drawn, p.lastDraw = true, time.Now()
}

// Table returns the run's summary: one line a stage with its status,
// partitions, rows, bytes, time and the time restoring saved.
func (r *Report) Table() string {
	var b strings.Builder
	state := "resumed"
	switch {
	case r.UpToDate:
		state = "up to date: nothing to do"
	case !r.Resumed:
		state = "new"
	}
	fmt.Fprintf(&b, "pipeline %s, run %s (%s), %v\n", r.Pipeline, r.Run, state, r.Elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "stage\tstatus\tpartitions\trows\tbytes\ttime\tsaved\t")
	var saved time.Duration
	for _, s := range r.Stages {
		parts := fmt.Sprint(s.Partitions)
		if s.Status == Computed && s.PartitionsRestored > 0 {
			parts = fmt.Sprintf("%d (%d restored)", s.Partitions, s.PartitionsRestored)
		}
		if s.Status == Computed && !s.Checkpointed {
			parts += " (not stored)"
		}
		if s.Status == Skipped {
			parts = "-"
		}
		rows, bytes := count(s.Rows), bytesString(s.Bytes)
		if s.Status == Skipped {
			rows, bytes = "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Name, s.Status, parts, rows, bytes,
			s.Elapsed.Round(time.Millisecond), s.Saved.Round(time.Millisecond))
		saved += s.Saved
	}
	tw.Flush()
	for _, s := range r.Stages {
		if len(s.Counters) == 0 {
			continue
		}
		keys := make([]string, 0, len(s.Counters))
		for k := range s.Counters {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, fmt.Sprintf("%s=%d", k, s.Counters[k]))
		}
		fmt.Fprintf(&b, "counters of %s: %s\n", s.Name, strings.Join(kv, " "))
	}
	for _, o := range r.Outputs {
		fmt.Fprintf(&b, "published %s: %s (%d files, %s rows, %s)\n", o.Stage, o.Location, o.Files, count(o.Rows), bytesString(o.Bytes))
	}
	if saved > 0 {
		fmt.Fprintf(&b, "restoring saved about %v of computation\n", saved.Round(time.Millisecond))
	}
	if c := r.Cleanup; c.Objects > 0 {
		fmt.Fprintf(&b, "deleted intermediate data of run(s) %s: %d objects, %s\n", strings.Join(c.Runs, ", "), c.Objects, bytesString(c.Bytes))
	}
	return b.String()
}

// count formats n with thousands separators.
func count(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// bytesString formats a byte count in B, KiB, MiB or GiB, as the cairn
// command does.
func bytesString(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
