//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// FuzzClientBytes sends arbitrary bytes through the proxy as one client (A)
// while another client (B) runs a known pipeline. Whatever A sends:
//   - B gets exactly the right replies;
//   - A gets a well-formed RESP stream (a torn last value is allowed: a
//     tunnel ends when A closes its side) and the proxy closes A's
//     connection once A has closed its side;
//   - afterwards the proxy accepts a new connection and answers PING, and
//     it holds no client and no dedicated connection any more.
//
// One Redis and one proxy serve the whole fuzz process. The Redis process is
// started here rather than with redistest so that it dies with the process
// (Pdeathsig) even when a fuzz worker is killed or crashes. Commands that
// would change the server for everyone and are not the proxy's business to
// refuse (FLUSHALL, CONFIG, DEBUG, ACL, ...) are renamed away on it, and
// values are bounded (proto-max-bulk-len 1mb); SHUTDOWN and REPLICAOF are
// left alone: refusing them is the proxy's job.
//
// Run: go test ./proxy -run XXX -fuzz FuzzClientBytes -fuzztime 60s
func FuzzClientBytes(f *testing.F) {
	for _, s := range fzSeeds() {
		f.Add([]byte(s))
	}
	fx := fzStart(f)
	var iter atomic.Int64
	f.Fuzz(func(t *testing.T, in []byte) {
		n := iter.Add(1)
		aOut := make(chan fzResult, 1)
		go func() { aOut <- fzSendAndClose(t, fx.proxy.Addr, in) }()

		fzCheckB(t, fx.proxy.Addr, fmt.Sprintf("fzb:%d:%d:", os.Getpid(), n))

		a := <-aOut
		if a.err != nil {
			t.Fatalf("client A sent %d bytes %s and closed its side: %v (read %s)", len(in), resptest.Quote(in), a.err, resptest.Quote(a.out))
		}
		if err := fzWellFormed(a.out); err != nil {
			t.Fatalf("client A sent %s and got a malformed reply stream: %v\n%s", resptest.Quote(in), err, resptest.Quote(a.out))
		}

		c := resptest.Dial(t, fx.proxy.Addr)
		if r, err := c.Pipeline([]byte("PING\r\n"), 1, 5*time.Second); err != nil || string(r[0]) != "+PONG\r\n" {
			t.Fatalf("after input %s: PING on a new connection: %q, %v", resptest.Quote(in), r, err)
		}
		c.Close()

		// Polled every millisecond, not every poll.Interval: the proxy sees
		// the closes at once, and waits of 10 ms nearly doubled the time an
		// input takes (about 3 ms).
		deadline := time.Now().Add(3 * time.Second)
		for fx.proxy.clients.Load() != 0 || fx.proxy.pinned.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("after input %s and every client gone: the proxy counts %d clients and %d pinned connections",
					resptest.Quote(in), fx.proxy.clients.Load(), fx.proxy.pinned.Load())
			}
			time.Sleep(time.Millisecond)
		}
		// A's keys, in any database, must not pile up over thousands of inputs.
		if r, err := fx.admin.Pipeline(fx.flushall, 1, 5*time.Second); err != nil || string(r[0]) != "+OK\r\n" {
			t.Fatalf("flushing redis: %q, %v", r, err)
		}
	})
}

type fzFixture struct {
	proxy    *testProxy
	admin    *resptest.Conn // direct to Redis
	flushall []byte
}

type fzResult struct {
	out []byte
	err error
}

// fzSendAndClose is client A: it writes in, closes its sending side, and
// reads until the proxy closes the connection. It runs off the test's
// goroutine, so it returns its failure instead of failing t.
func fzSendAndClose(t *testing.T, addr string, in []byte) fzResult {
	nc, err := net.DialTimeout("tcp", addr, resptest.DialTimeout)
	if err != nil {
		return fzResult{err: err}
	}
	c := resptest.NewConn(t, nc)
	defer c.Close()
	werr := make(chan error, 1)
	go func() {
		err := c.TryWrite(in)
		if err == nil {
			err = nc.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	// A reset after the proxy closed (with unread input) ends the stream
	// too.
	out, closed := c.ReadUntilClosed(5 * time.Second)
	<-werr // a write the proxy refused (it closed first) is fine
	if !closed {
		return fzResult{out: out, err: errors.New("the proxy neither closed the connection nor stopped answering within 5s")}
	}
	return fzResult{out: out}
}

// fzWellFormed reports whether out is a sequence of RESP values, allowing
// the last one to be cut short.
func fzWellFormed(out []byte) error {
	r := bytes.NewReader(out)
	br := bufio.NewReader(r)
	for {
		consumed := len(out) - r.Len() - br.Buffered()
		if consumed == len(out) {
			return nil
		}
		if _, err := resptest.ReadValue(br); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil // torn last value
			}
			return fmt.Errorf("at byte %d: %w", consumed, err)
		}
	}
}

// fzCheckB is client B: a pipeline whose replies are known exactly.
func fzCheckB(t *testing.T, addr, k string) {
	val := strconv.FormatInt(rand.Int63(), 36) + "\r\n\x00"
	cmds := []dtCmd{
		{args: []string{"SET", k + "a", val}},
		{args: []string{"GET", k + "a"}},
		{args: []string{"INCR", k + "n"}},
		{args: []string{"INCR", k + "n"}},
		{args: []string{"APPEND", k + "a", "z"}},
		{args: []string{"INCRBY", k + "n", "40"}},
		{args: []string{"GET", k + "a"}},
		{args: []string{"DEL", k + "a", k + "n"}},
	}
	want := []string{
		"+OK\r\n",
		"$" + strconv.Itoa(len(val)) + "\r\n" + val + "\r\n",
		":1\r\n", ":2\r\n",
		":" + strconv.Itoa(len(val)+1) + "\r\n",
		":42\r\n",
		"$" + strconv.Itoa(len(val)+1) + "\r\n" + val + "z\r\n",
		":2\r\n",
	}
	var req []byte
	for _, c := range cmds {
		req = c.encode(req)
	}
	b := resptest.Dial(t, addr)
	defer b.Close()
	got, err := b.Pipeline(req, len(cmds), 5*time.Second)
	if err != nil {
		t.Fatalf("client B: %v after %d replies %q", err, len(got), got)
	}
	for i := range cmds {
		if string(got[i]) != want[i] {
			t.Fatalf("client B, %s: got %s, want %s", cmds[i], resptest.Quote(got[i]), resptest.Quote([]byte(want[i])))
		}
	}
}

// fzStart starts Redis and the proxy for this process; f's cleanup ends them.
func fzStart(f *testing.F) *fzFixture {
	flush := "FLUSHALL-" + strconv.FormatInt(rand.Int63(), 36)
	addr := fzStartRedis(f,
		"--proto-max-bulk-len", "1mb",
		"--rename-command", "FLUSHALL", flush,
		"--rename-command", "FLUSHDB", "",
		"--rename-command", "SWAPDB", "",
		"--rename-command", "CONFIG", "",
		"--rename-command", "DEBUG", "",
		"--rename-command", "ACL", "",
		"--rename-command", "MODULE", "",
		"--rename-command", "MIGRATE", "",
		"--rename-command", "SAVE", "",
		"--rename-command", "BGSAVE", "",
		"--rename-command", "BGREWRITEAOF", "",
	)
	fx := &fzFixture{
		proxy:    startProxy(f, Config{}, addr),
		admin:    resptest.Dial(f, addr),
		flushall: resptest.Cmd(flush),
	}
	return fx
}

// fzStartRedis runs redis-server on a free port until f ends. The child gets
// SIGKILL when the thread that started it exits: that thread is locked to a
// goroutine that lives until cleanup, or until the process dies.
func fzStartRedis(tb testing.TB, args ...string) string {
	tb.Helper()
	dir := tb.TempDir()
	port := redistest.FreePort(tb)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	argv := append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no",
		"--loglevel", "warning", "--logfile", "redis.log",
	}, args...)
	started := make(chan error, 1)
	stop := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		cmd := exec.Command(redistest.Binary, argv...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		<-stop
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if err := <-started; err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	tb.Cleanup(func() {
		close(stop)
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			io.WriteString(c, "PING\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return addr
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(dir + "/redis.log")
			tb.Fatalf("redis-server on %s not ready: %v\n%s", addr, err, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fzSeeds are the seed corpus: it runs with every go test.
func fzSeeds() []string {
	set := "*3\r\n$3\r\nSET\r\n$3\r\nfza\r\n$5\r\nhello\r\n"
	get := "*2\r\n$3\r\nGET\r\n$3\r\nfza\r\n"
	return []string{
		// valid commands and pipelines
		"*1\r\n$4\r\nPING\r\n",
		set + get,
		strings.Repeat(set+get, 50),
		"*3\r\n$3\r\nSET\r\n$3\r\nfzb\r\n$6\r\n\r\n\x00\xff\r\n\r\n" + "*2\r\n$3\r\nGET\r\n$3\r\nfzb\r\n",
		"*2\r\n$4\r\nINCR\r\n$3\r\nfzn\r\n*2\r\n$4\r\nINCR\r\n$3\r\nfzn\r\n",
		// inline commands
		"PING\r\n",
		"SET fzi value\r\nGET fzi\r\nPING\nECHO 'x y'\r\n\r\n",
		"\"unbalanced\r\n",
		"ECHO \"a\\x41\\n\"\r\n",
		strings.Repeat("a", 70000),
		strings.Repeat("PING ", 14000) + "\r\n",
		// malformed headers and lengths
		"*0\r\n",
		"*-1\r\nPING\r\n",
		"*1\r\n$-5\r\n",
		"*1\r\n$-1\r\n",
		"*x\r\n",
		"*1x\r\n",
		"*1\r\n\n",
		"*1\r\nPING\r\n",
		"*2\r\n$3\r\nGET\r\n$999999999999\r\n",
		"*2\r\n$3\r\nGET\r\n$9223372036854775807\r\n",
		"*1048577\r\n",
		"*99999999999999999999\r\n",
		"*1\r\n$" + strings.Repeat("0", 40) + "4\r\nPING\r\n",
		"$5\r\nhello\r\n",
		":1\r\n+OK\r\n-ERR x\r\n",
		// partial commands
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab",
		"*1\r\n$4\r\nPI",
		"*2\r\n",
		// transactions and connection state
		"MULTI\r\nSET fzm 1\r\nINCR fzm\r\n",
		// transactions sent whole, in pieces, and broken inside
		"*1\r\n$5\r\nMULTI\r\n" + set + get + "*1\r\n$4\r\nEXEC\r\n" + get,
		"*1\r\n$5\r\nMULTI\r\n" + set + "*1\r\n$7\r\nDISCARD\r\n*1\r\n$5\r\nMULTI\r\n*1\r\n$4\r\nEXEC\r\n",
		"*1\r\n$5\r\nMULTI\r\n" + set + "*2\r\n$3\r\nGET",
		"*1\r\n$5\r\nMULTI\r\n" + set + "*1\r\n$x\r\nEXEC\r\n",
		"*1\r\n$5\r\nMULTI\r\n" + set + "*2\r\n$4\r\nEXEC\r\n$1\r\nx\r\n" + get,
		"MULTI\r\nSET fzm a\x00b\r\nEXEC\r\n", // inline: Redis would wait for the line's end forever
		"SELECT 16\r\nBLPOP fzq 0.01\r\n",     // a pin released in the batch, then a tunnel
		"MULTI\r\nSET fzm 1\r\nEXEC\r\nEXEC\r\nDISCARD\r\n",
		"WATCH fzw\r\nMULTI\r\nSELECT 2\r\nEXEC\r\n",
		"SELECT 3\r\nSET fzs x\r\nMULTI\r\nSELECT 0\r\n",
		"MULTI\r\nSUBSCRIBE fzc\r\nEXEC\r\nPING\r\n",
		"MULTI\r\nBLPOP fzl 0\r\nEXEC\r\n",
		"CLIENT SETNAME fz\r\nCLIENT GETNAME\r\nCLIENT ID\r\n",
		"CLIENT REPLY OFF\r\nPING\r\nCLIENT REPLY ON\r\nPING\r\n",
		"AUTH x\r\nAUTH default x\r\nHELLO 2\r\n",
		"HELLO 3\r\nPING\r\nHGETALL fzh\r\n",
		"RESET\r\nPING\r\n",
		"QUIT\r\nPING\r\n",
		// pub/sub, blocking, monitor
		"SUBSCRIBE fzc1 fzc2\r\nPING\r\nGET x\r\nUNSUBSCRIBE\r\nPING\r\n",
		"PSUBSCRIBE *\r\nPUNSUBSCRIBE\r\n",
		"UNSUBSCRIBE\r\nUNSUBSCRIBE a b\r\n",
		"BLPOP fzl 0\r\n",
		"BLPOP fzl 0.05\r\nPING\r\n",
		"XREAD BLOCK 10 STREAMS fzx $\r\n",
		"WAIT 1 0\r\n",
		"MONITOR\r\n",
		// refused commands
		"SHUTDOWN NOSAVE\r\n",
		"REPLICAOF 127.0.0.1 1\r\n",
		"CONFIG SET slave-read-only no\r\n",
		"EVAL \"return redis.call('SHUTDOWN')\" 0\r\n",
		// binary junk
		"\x00\xff\xfe\r\n\r\n",
		"\r\n\r\n\r\n",
		"\x1b[A\x03\x04",
		string([]byte{'*', 0xff, '\r', '\n'}),
	}
}
