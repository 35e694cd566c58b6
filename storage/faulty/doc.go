// Package faulty wraps a storage.Storage to inject failures and simulate
// crashes, for tests of everything built on checkpoint storage.
//
// Two kinds of fault, both deterministic:
//
//  1. FailAt(k, match): the k-th operation (counting from 1) that match
//     accepts fails with ErrInjected and has no effect. Later operations
//     succeed. This models a transient error: a full disk, a timeout.
//  2. CrashAt(k, match): at the k-th matching operation the "process dies":
//     that operation and every later one fail with ErrCrashed. A Put (or
//     Delete) that is interrupted by the crash either takes effect whole or
//     not at all (chosen by PutLandsOnCrash), never in part, as with a real
//     atomic backend.
//
// A test typically runs a workload once to count its operations (Ops), then
// for every k from 1 to that count reruns it with a fault at k and checks
// that the run either returns an error or leaves storage that recovers to
// the oracle's answer.
package faulty
