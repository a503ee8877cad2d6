package proxy

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Redis keeps loaded Lua scripts in a cache of each server's own: SCRIPT
// LOAD is not replicated, and a restart empties it. Behind one address
// that would show as EVALSHA failing with NOSCRIPT after a failover (the
// new master never saw the script). The proxy therefore remembers the
// scripts clients load through it and copies them to every server it
// knows, replicas included, so the one promoted already has them.
const (
	maxMirroredScripts = 4096
	maxMirroredBytes   = 8 << 20
	// scriptCheckEvery is how often each server is asked which scripts it
	// lacks (one SCRIPT EXISTS): a restarted server gets them back.
	scriptCheckEvery = 2 * time.Second
	scriptIOTimeout  = 2 * time.Second
)

// scriptMirror remembers scripts loaded through the proxy and loads them on
// every server of the topology. The data path only calls note and forget;
// all I/O happens on the mirror's goroutine (started by the first script)
// and the one it starts per server for each round.
type scriptMirror struct {
	p *Proxy

	mu      sync.RWMutex
	shas    map[string]string // body -> hex SHA1
	bytes   int               // sum of the bodies' lengths
	full    bool              // a script was left out; logged once
	servers []string          // master and replicas of the current topology
	started bool
	closed  bool
	every   time.Duration // scriptCheckEvery; tests lower it (setEvery) before the first script

	kick chan struct{} // a script or a server was added: sync now
	done chan struct{} // closed by close
}

func newScriptMirror(p *Proxy) *scriptMirror {
	return &scriptMirror{
		p:     p,
		shas:  make(map[string]string),
		every: scriptCheckEvery,
		kick:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
}

// note remembers body (the argument of SCRIPT LOAD). Known scripts cost a
// map lookup under a read lock and no allocation.
func (m *scriptMirror) note(body []byte) {
	m.mu.RLock()
	_, ok := m.shas[string(body)]
	m.mu.RUnlock()
	if ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.shas[string(body)]; ok || m.closed {
		return
	}
	if len(m.shas) >= maxMirroredScripts || m.bytes+len(body) > maxMirroredBytes {
		if !m.full {
			m.full = true
			m.p.log.Warn("scripts: not copied to the other servers: the proxy keeps at most this many",
				"scripts", maxMirroredScripts, "bytes", maxMirroredBytes)
		}
		return
	}
	sum := sha1.Sum(body)
	m.shas[string(body)] = hex.EncodeToString(sum[:])
	m.bytes += len(body)
	m.p.m.scripts.Set(float64(len(m.shas)))
	if !m.started {
		m.started = true
		go m.run(m.every)
	}
	m.poke()
}

// forget drops every script (SCRIPT FLUSH through the proxy): they are no
// longer copied to servers that lack them.
func (m *scriptMirror) forget() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.shas)
	m.bytes, m.full = 0, false
	m.p.m.scripts.Set(0)
}

// setServers is called with every topology: new servers get the scripts
// at once.
func (m *scriptMirror) setServers(servers []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.servers = servers
	m.poke()
}

func (m *scriptMirror) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *scriptMirror) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.done)
	}
}

func (m *scriptMirror) setEvery(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.every = d
}

// snapshot returns the servers and the scripts to copy. setServers
// replaces the servers slice whole, so it is shared, not copied.
func (m *scriptMirror) snapshot() (servers []string, shas, bodies []string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.servers) == 0 {
		return nil, nil, nil
	}
	for b, s := range m.shas {
		shas, bodies = append(shas, s), append(bodies, b)
	}
	return m.servers, shas, bodies
}

// drop forgets a script that no server can compile.
func (m *scriptMirror) drop(body string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.shas[body]; ok {
		delete(m.shas, body)
		m.bytes -= len(body)
		m.p.m.scripts.Set(float64(len(m.shas)))
	}
}

// mirrorTarget is the mirror's connection to one server.
type mirrorTarget struct {
	c       redis.Conn
	failing bool // the last sync failed (logged once until it works again)
}

// hangUp closes the connection, if any; the next sync dials again.
func (tg *mirrorTarget) hangUp() {
	if tg.c != nil {
		tg.c.Close()
		tg.c = nil
	}
}

// run syncs every server when kicked and every scriptCheckEvery, all
// servers at once, so one that does not answer delays no other.
func (m *scriptMirror) run(every time.Duration) {
	targets := make(map[string]*mirrorTarget)
	defer func() {
		for _, tg := range targets {
			tg.hangUp()
		}
	}()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-m.kick:
		case <-tick.C:
		}
		servers, shas, bodies := m.snapshot()
		for addr, tg := range targets {
			if !slices.Contains(servers, addr) {
				tg.hangUp()
				delete(targets, addr)
			}
		}
		if len(shas) == 0 {
			continue
		}
		var wg sync.WaitGroup
		for _, addr := range servers {
			tg := targets[addr]
			if tg == nil {
				tg = &mirrorTarget{}
				targets[addr] = tg
			}
			wg.Go(func() { m.syncTarget(tg, addr, shas, bodies) })
		}
		wg.Wait()
	}
}

// syncTarget syncs one server, logging a failure once until it recovers.
func (m *scriptMirror) syncTarget(tg *mirrorTarget, addr string, shas, bodies []string) {
	err := m.sync(tg, addr, shas, bodies)
	switch {
	case err != nil && !tg.failing:
		m.p.log.Warn("scripts: could not copy to server; retrying", "server", addr, "err", err)
	case err == nil && tg.failing:
		m.p.log.Info("scripts: copying to server again", "server", addr)
	}
	if err != nil {
		tg.hangUp()
	}
	tg.failing = err != nil
}

// sync asks addr which scripts it lacks and loads those, in one round
// trip each.
func (m *scriptMirror) sync(tg *mirrorTarget, addr string, shas, bodies []string) error {
	if tg.c == nil {
		ctx, cancel := context.WithTimeout(context.Background(), scriptIOTimeout)
		c, err := m.p.dialer.control(ctx, addr, scriptIOTimeout)
		cancel()
		if err != nil {
			return err
		}
		tg.c = c
	}
	c := tg.c
	args := make([]any, 0, 1+len(shas))
	args = append(args, "EXISTS")
	for _, s := range shas {
		args = append(args, s)
	}
	have, err := redis.Ints(c.Do("SCRIPT", args...))
	if err != nil {
		return err
	}
	if len(have) != len(shas) {
		return errors.New("SCRIPT EXISTS: wrong number of answers")
	}
	var missing []int
	for i, h := range have {
		if h == 0 {
			missing = append(missing, i)
		}
	}
	for _, i := range missing {
		if err := c.Send("SCRIPT", "LOAD", bodies[i]); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return err
	}
	for _, i := range missing {
		sha, err := redis.String(c.Receive())
		var re redis.Error
		switch {
		case errors.As(err, &re) && strings.Contains(string(re), "compiling"):
			// Redis refused it to the client too; nothing to copy.
			m.drop(bodies[i])
		case err != nil:
			return err
		case sha != shas[i]:
			return errors.New("SCRIPT LOAD: unexpected SHA1 " + sha)
		default:
			m.p.m.scriptLoads.Inc()
			m.p.log.Debug("scripts: copied", "server", addr, "sha", sha)
		}
	}
	return nil
}
