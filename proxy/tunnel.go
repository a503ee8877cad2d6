package proxy

import (
	"net"
	"sync"
	"time"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
	"github.com/redis-proxy/redis-proxy/proxy/internal/resp"
)

// tunnel turns the session into a full-duplex pipe to its dedicated
// connection for the rest of its life: replies, pushed messages and
// MONITOR output flow to the client as Redis sends them, in order. The
// proxy still reads and classifies each client command, so refused
// commands and the proxy's own AUTH are answered; those answers are made
// by the server (an EVAL that returns the reply) so they stay in order
// with everything else. rest is what the client sent after the command
// that opened the tunnel, that command included; handshake: the server's
// connection is named (see below; a RESP2 subscriber takes no SETNAME). Its
// server-side id is published for CLIENT UNBLOCK and TRACKING REDIRECT.
//
// Two goroutines own the client from here: this one reads the client and
// writes the server; the one it starts copies the server to the client.
// When either side ends, both connections close and the session ends.
func (g *gclient) tunnel(rest []resp.Command, handshake bool) {
	g.s.st.Conn = command.Tunnel
	defer g.finish()
	pin := g.pin
	if !g.flush() {
		return
	}
	g.nc.SetReadDeadline(time.Time{})
	g.p.tunnels.Store(g.s.st.ID, pin.id)
	defer g.p.tunnels.Delete(g.s.st.ID)
	named := false
	switch {
	case g.opened != nil:
		named = g.opened.named // its SETNAME is written, the reply not read
	case handshake:
		// The name the proxy kept goes to the server (so its CLIENT LIST,
		// which the proxy's merges, shows it) in the same write as the
		// commands: a blocking command reaches the server with no round
		// trip of the proxy's before it, in the order clients sent theirs.
		if named = g.s.st.Name != ""; named {
			g.batch.add(resp.AppendCommand(nil, "CLIENT", "SETNAME", g.s.st.Name))
		}
	}
	g.tacks = g.newTunnelAcks()
	var err error
	switch {
	case g.opened == nil:
		err = g.forward(pin, rest)
	case g.tacks != nil && g.tacks.note(g.opened.info, nil) && g.tacks.endBatch(1):
		// The opener wrote the blocking write: its WAIT follows it.
		_, err = pin.nc.Write(g.p.waitCommand())
	}
	if named && err == nil {
		_, _, err = pin.rr.AppendValue(nil, 4096) // SETNAME's +OK, before the copier passes replies on
	}
	var wmu sync.Mutex // the client's write side, shared with the copier
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		g.copyToClient(pin, &wmu)
		g.nc.Close()
	}()
	g.s.publish(time.Now())
	for err == nil && !g.closing && !g.eof {
		g.cmds, g.args = g.cmds[:0], g.args[:0]
		if g.parse(); len(g.cmds) > 0 {
			err = g.forward(pin, g.cmds)
			g.s.publish(time.Now())
			continue
		}
		if g.protoErr != "" {
			// As Redis, the error then close; the replies still on their
			// way from the server may come after it.
			wmu.Lock()
			g.nc.Write(resp.AppendError(nil, g.protoErr))
			wmu.Unlock()
			break
		}
		g.read()
	}
	pin.nc.Close()
	<-copied
}

// forward writes cmds to the server in one write.
func (g *gclient) forward(pin *dedicated, cmds []resp.Command) error {
	writes := 0
	for _, c := range cmds {
		b, info := g.tunnelBytes(c)
		if g.tacks != nil && g.tacks.note(info, c.Args) {
			writes++
		}
		g.batch.add(b)
	}
	if writes > 0 && g.tacks.endBatch(writes) {
		if g.waitCmd == nil {
			g.waitCmd = g.p.waitCommand()
		}
		g.batch.add(g.waitCmd)
	}
	clear(cmds)
	return g.batch.writeTo(pin.nc, gKeep)
}

// tunnelBytes returns what to send to the server for a client command in a
// tunnel: the command itself (or its rewrite), or for a reply the proxy
// makes, an EVAL that makes the server send that reply.
func (g *gclient) tunnelBytes(c resp.Command) ([]byte, *command.Info) {
	rt := g.p.routes.Load()
	if rt.table == nil {
		return c.Raw, nil
	}
	d, local := g.s.decide(rt.table, c, g.local[:0])
	g.local = local
	g.s.commit(&d, c.Args)
	if d.Kind == command.Ask {
		// The answer goes through the server, in order with the rest.
		local, _ = g.p.ask(g.s, c.Args, local)
		d.Kind = command.Local
	}
	if d.Kind != command.Local {
		if d.Info.Has(command.Blocking) {
			g.s.entry.blockedSince.Store(time.Now().UnixNano())
		}
		return d.Raw, d.Info
	}
	if ev, ok := command.EvalFor(local); ok {
		return ev, nil
	}
	return c.Raw, d.Info
}

// copyToClient copies everything the server sends to the client until
// either side fails. A client that does not take the bytes for
// WriteTimeout is disconnected.
func (g *gclient) copyToClient(pin *dedicated, wmu *sync.Mutex) {
	buf := make([]byte, 32<<10)
	client := g.nc
	var out []byte
	if ta := g.tacks; ta != nil {
		defer g.tunnelAcksDone(ta)
	}
	for {
		n, err := pin.rr.R.Read(buf)
		if n > 0 {
			g.s.entry.blockedSince.Store(0) // a reply came: not blocked (any more)
			b := buf[:n]
			if ta := g.tacks; ta != nil {
				var ok bool
				if out, ok = g.frame(ta, b, out[:0], g.p.cfg().MaxOutput); !ok {
					return
				}
				b = out
			}
			if len(b) > 0 && !writeLocked(client, wmu, b, g.p.cfg().WriteTimeout) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func writeLocked(c net.Conn, mu *sync.Mutex, b []byte, timeout time.Duration) bool {
	mu.Lock()
	defer mu.Unlock()
	c.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.Write(b)
	return err == nil
}
