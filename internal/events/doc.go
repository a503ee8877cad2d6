// Package events keeps the operator's history: failovers, switchovers,
// promotions and demotions, servers going down and coming back, the VIP
// moving between the proxies, split brains resolved and writes lost, each
// with its time, the replication epoch, the servers concerned, a message
// for a human and, where it has one, how long it took.
//
// The parts that decide (replication.Decide, vip.Step) know nothing of it:
// the loops that apply their decisions derive the events — the replication
// manager from the actions it applies (replication.Config.OnEvent), main's
// pair loop from the VIP node's role changes and the other proxy's adverts
// — and hand them to a Ring, which keeps the newest in memory for the
// admin API (GET /events) and the status page. Each event is also one log
// line with its kind (event=...), written where it was derived; a Ring
// never logs.
//
// Typical use:
//
//	ring := events.NewRing(256)
//	cfg.OnEvent = func(e events.Event) { ring.Add(e) }
//	...
//	evs, last, changed := ring.Since(seq) // newer than seq, oldest first
package events
