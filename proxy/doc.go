// Package proxy is redis-proxy's data path: a RESP server that makes one
// Redis master and its replicas look like a single Redis.
//
// # One protocol core, two ways to serve a client
//
// Every client's bytes are read with one request parser
// (internal/resp.Parser: limits checked in the same pass, inline commands
// split as Redis splits them), every command is classified by one pure
// classifier (internal/command.Classify, over the server's own COMMAND
// table and the session's state, as a value), and every server reply is
// framed by one reply scanner (internal/resp.ReplyScanner). Two ways of
// serving clients are built on that core:
//
//   - Event loops (Linux; Config.EventLoops, default 1): one goroutine
//     locked to a thread waits in epoll on client sockets and on the
//     loop's own shared server connections. A client's commands go into
//     the server connection's write buffer and the replies straight back
//     into the client's: no goroutine is woken per request. Clients start
//     here, and stay while their commands need no connection of their own
//     (loop_*_linux.go).
//   - A goroutine per client (gclient.go): every client when there are no
//     event loops, every TLS client (tls.go: a listener from
//     tls.NewListener), and a client an event loop hands over at its first
//     command that needs a dedicated connection — a transaction sent a
//     command at a time, WATCH, SELECT n, an ACL user's AUTH (a pinned
//     connection, pinned.go, until the state ends), or a blocking command,
//     SUBSCRIBE, MONITOR, RESP3, CLIENT TRACKING (a tunnel for the rest
//     of its life, tunnel.go). Stateless commands there go over shared
//     connections too (pooled.go, backend.go). After 16 batches in a row
//     without a dedicated connection the client goes back to a loop.
//
// A loop client's first blocking command is not run by its goroutine: the
// loop hands it to the opener (opener.go), one thread that writes such
// commands to connections dialed ahead, in the order the loop read them,
// so blocked clients are served in the order they sent.
//
// # The clients clients see
//
// The proxy keeps a table of its clients (clients.go): CLIENT LIST, INFO
// and KILL (command.Ask, answered in ask.go), CLIENT ID, UNBLOCK and
// TRACKING REDIRECT, and INFO's clients section (a reply filter) describe
// them with the proxy's ids, never the proxy's own connections; what only
// the server knows of a client with a connection of its own comes from
// that connection's line in the server's CLIENT LIST.
//
// A transaction a client sends whole (MULTI through EXEC) whose commands
// concern no connection state runs on a loop's shared connection as one
// block (loop_tx_linux.go).
//
// # Routing
//
// Commands are routed by the server's own COMMAND table, re-read when
// the master changes: read-only commands may go to replicas (ReadFrom),
// renamed or unknown ones go to the master. Commands that would break the
// managed topology (REPLICAOF, FAILOVER, SHUTDOWN, SYNC, CONFIG SET of
// replication settings) are refused. Routing follows the
// replication.Topology given with SetTopology. While no master is known,
// commands wait (HoldTimeout, bounded by MaxHeld) and then get a TRYAGAIN
// error; they never go to a guessed server. Reads in flight on a
// connection that dies may run again (rerun.go).
//
// # Who calls what
//
// Proxy's exported methods are safe from any goroutine. A client's
// session (session.go) is owned by exactly one goroutine at a time: its
// event loop's, or its own on the goroutine path, and a hand-off passes it
// whole. An event loop's state is touched only on its goroutine; other
// goroutines reach it through evloop.post. A pool (pool.go) is shared;
// its shared connections take requests from any goroutine (backendConn
// .send); a dedicated connection belongs to the one session that acquired
// it until released.
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
