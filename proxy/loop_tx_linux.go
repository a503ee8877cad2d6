//go:build linux

package proxy

import (
	"golang.org/x/sys/unix"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
)

// Transactions sent whole. Client libraries pipeline a transaction, MULTI
// through EXEC or DISCARD, in one go. When nothing in it concerns the
// connection (command.Info.InBlock), the loop writes it to the master's
// shared connection as one block: Redis runs a connection's commands in
// order, so nothing of another client comes between its commands there,
// and EXEC or DISCARD leaves the connection as it was. The client stays on
// the loop. Any other transaction takes the goroutine path.

// block runs the transaction that starts at buf with MULTI (n bytes, info
// its entry) if it can go as a block, and returns how many bytes of buf it
// used and how many requests it queued. It uses nothing while the block is
// still arriving (c reads on), or when c must stop: the block waits for a
// connection, or takes the goroutine path (c.handoff).
func (l *evloop) block(c *lclient, rt *routes, buf []byte, n int, info *command.Info) (used, queued int) {
	end := l.txBlock(c, rt.table, buf, n, info)
	if end == 0 {
		return 0, 0
	}
	c.txOff = 0
	if end < 0 {
		c.handoff, c.stop = true, true
		return 0, 0
	}
	b := l.conn(rt.master)
	if !l.mayQueue(c, b) {
		return 0, 0
	}
	queued = l.queue(c, b, buf[:end], c.txInfos...)
	if cap(c.txInfos) > 1024 {
		c.txInfos = nil
	}
	return end, queued
}

// txBlock looks at the transaction that starts at buf with MULTI. When the
// client sent the whole of it (through EXEC or DISCARD) and every command
// in it may stand in a block, txBlock returns the block's length, with the
// entry of each of its commands in c.txInfos; 0 if a command of it is
// still arriving (the next call, on the same block with more bytes, goes
// on from there, c.txParser keeping its place); -1 if it needs a dedicated
// connection: it is not all there (the client waits for replies in
// between), too large, or holds such a command, or an inline one: the
// block goes to Redis as the client wrote it, and only a multibulk
// command reaches Redis exactly as the proxy parsed it (elsewhere the
// proxy forwards inline commands in multibulk form).
func (l *evloop) txBlock(c *lclient, t *command.Table, buf []byte, n int, info *command.Info) int {
	if buf[0] != '*' {
		return -1
	}
	off := c.txOff
	if off == 0 {
		off = n
		c.txInfos = append(c.txInfos[:0], info)
		c.txParser.Reset()
		c.txParser.MaxBulk = c.parser.MaxBulk
	}
	for off < len(buf) {
		if off > txBlockMax || buf[off] != '*' {
			return -1
		}
		cmd, m, err := c.txParser.Next(buf[off:])
		switch {
		case err != nil:
			return -1
		case m == 0:
			c.txOff = off
			return 0
		case len(cmd.Args) == 0:
			return -1
		}
		ti := c.s.lookups.Lookup(t, cmd.Args)
		c.txInfos = append(c.txInfos, ti)
		off += m
		switch {
		case ti.Special == command.Exec || ti.Special == command.Discard:
			if len(cmd.Args) != 1 {
				return -1 // refused, and the transaction ends: let Redis say so on a connection of its own
			}
			return off
		case !ti.InBlock():
			return -1
		}
	}
	// Read to a command's end inside the block: more is on its way if
	// the socket holds it (a large block comes in several reads); if not,
	// the client may be waiting for the replies so far.
	if unread, err := unix.IoctlGetInt(c.fd, unix.SIOCINQ); err == nil && unread > 0 && off <= txBlockMax {
		c.txOff = off
		return 0
	}
	return -1
}
