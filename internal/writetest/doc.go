// Package writetest measures what a Redis client sees while a test breaks
// things behind it: every command it sent, when, how long it waited and
// what became of it, and at the end which acknowledged writes are gone.
//
// A Client is the scenario's application: round after round it writes a
// unique key (Prefix:1, Prefix:2, ..., each with its own name as value)
// and, with ReadBack, reads it back, or it only reads one key. It dials
// again after a transport error, as a client library would, and keeps its
// connection after an error reply. It reports each command as an Op to a
// callback, so it runs the same in the test's process (into a Recorder)
// and in a helper process that prints the ops as JSON lines (Op has a
// JSON form).
//
// The functions over []Op (Acked, Failed, Writes, Outage, MaxLatency,
// FirstAck, Describe) are what the tests assert and log: how long writes
// were unavailable, which commands failed. ReadBack reads every
// acknowledged write from a server and says which are missing or hold
// another value: the lost writes. Typical use:
//
//	l := writetest.NewLoad()
//	rec := &writetest.Recorder{Name: "writer"}
//	l.Go(writetest.Client{Addr: proxy, Prefix: "w", ReadBack: true}, rec)
//	... crash, fail over ...
//	l.Stop()
//	ops := rec.Ops()
//	gap, _ := writetest.Outage(ops, crash, time.Now())
//	rb, err := writetest.ReadBack(master, writetest.AckedWrites(ops))
package writetest
