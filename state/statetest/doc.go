// Package statetest is the conformance suite every state store provider
// must pass: reads of one's own writes, isolation, versions, replays,
// aborts, a random workload checked against a plain map, retention,
// corruption named in errors, pinned configuration, a second writer, and
// crashes and failures at every storage operation (storage/faulty) and by
// SIGKILL.
//
// A provider's test calls Run, and its TestMain calls Main (the SIGKILL
// test re-runs the test binary as the writer it kills):
//
//	var harness = statetest.Harness{Name: memstate.Name, DeltaName: memstate.DeltaName, SnapshotName: memstate.SnapshotName}
//
//	func TestMain(m *testing.M) { statetest.Main(m, harness) }
//
//	func TestSuite(t *testing.T) { statetest.Run(t, harness) }
//
// A random test logs its seed; set CAIRN_SEED to replay it.
package statetest
