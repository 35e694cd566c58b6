// Package statecheck holds what state store tests and the demo share: a
// deterministic workload (the changes of each version follow from a seed
// and the version number, so any process can recompute them) and a plain Go
// map as the oracle to compare a store with.
package statecheck
