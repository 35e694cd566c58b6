package pebblestate_test

import (
	"flag"
	"testing"

	"github.com/cairn-data/cairn/state/statetest"
)

var updateSamples = flag.String("update-samples", "", "write a sample store in the current format to testdata/format-v<N> (give N)")

// Every sample under testdata/format-v* was written by an earlier build and
// must stay readable (DESIGN.md, "Compatibility of durable formats"). When
// the format changes, record a sample of the new one with
// go test -run TestFormatSamples -args -update-samples N, and keep the old.
func TestFormatSamples(t *testing.T) {
	if *updateSamples != "" {
		statetest.WriteSamples(t, harness, "testdata/format-v"+*updateSamples)
	}
	statetest.CheckSamples(t, harness, "testdata/format-v*")
}
