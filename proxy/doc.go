// Package proxy is redis-proxy's data path: a RESP server (redcon) that
// makes one Redis master and its replicas look like a single Redis.
//
// Stateless commands from many clients are multiplexed over a small pool of
// shared connections per server: a client's pipeline goes to the backend
// as one write, the raw RESP bytes are forwarded unchanged, and replies are
// matched to requests by order. Commands are classified by the server's own
// COMMAND table (re-read when the master changes); unknown or renamed
// commands go to the master.
//
// Sessions with server-side state get a dedicated connection: a transaction
// (MULTI/WATCH), a non-zero database, or an ACL user hold it until the
// state is gone; blocking commands, pub/sub, MONITOR, CLIENT REPLY/TRACKING
// and RESP3 (HELLO 3) turn the session into a tunnel to a dedicated
// connection for the rest of its life. Commands that would break the
// managed topology (REPLICAOF, FAILOVER, SHUTDOWN, SYNC, CONFIG SET of
// replication settings) are refused.
//
// Routing follows a replication.Topology given with SetTopology. While no
// master is known, commands wait (HoldTimeout, bounded by MaxHeld) and then
// get a TRYAGAIN error; they never go to a guessed server.
//
// Typical use:
//
//	p, err := proxy.New(proxy.Config{Logger: log, Registerer: prometheus.DefaultRegisterer})
//	...
//	p.SetTopology(replication.Topology{Master: "10.0.0.1:6379"})
//	ln, _ := net.Listen("tcp", ":6379")
//	go p.Serve(ln)
//	...
//	p.Close()
package proxy
