// Package redistest starts real redis-server processes on 127.0.0.1 for
// tests: free ports, a private working directory, and the means to kill -9,
// pause (SIGSTOP) and restart them.
//
// A test that needs Redis calls Start; the server is killed when the test
// ends. When redis-server is not installed the test fails with a message
// saying so: the suite's set-up (.ci/run) installs it, so a missing binary
// is a broken machine, not a reason to skip. Under -short (the unit layer)
// such tests skip, and say so.
package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
)

// Server is one redis-server process owned by a test.
type Server struct {
	Addr string // 127.0.0.1:port
	Port int
	Dir  string // working directory (RDB files, logs)
	// TLS, set by StartTLS, is the client configuration the helpers (the
	// readiness check, Dial, Do, ReplicaOf) reach the server with: it
	// serves TLS only, on Port.
	TLS *tls.Config

	t    testing.TB
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Binary is the redis-server executable the helpers run.
var Binary = "redis-server"

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start runs redis-server on a free port with the extra configuration args
// (for example "--requirepass", "secret") and waits until it answers PING.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return startServer(t, nil, args)
}

// StartTLS is Start for a server that serves TLS only (--port 0
// --tls-port on the free port): args must name its certificate, key and CA
// files (--tls-cert-file, --tls-key-file, --tls-ca-cert-file), and client
// is what the helpers reach it with (a client certificate in it, unless
// args say --tls-auth-clients no).
func StartTLS(t testing.TB, client *tls.Config, args ...string) *Server {
	t.Helper()
	return startServer(t, client, args)
}

func startServer(t testing.TB, client *tls.Config, args []string) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real redis-server: skipped under -short (the unit layer)")
	}
	if _, err := exec.LookPath(Binary); err != nil {
		t.Fatalf("redis-server not found on PATH (apt-get install -y redis-server): %v", err)
	}
	s := &Server{t: t, Dir: t.TempDir(), args: args, TLS: client}
	s.Port = FreePort(t)
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	s.start()
	t.Cleanup(s.Kill)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.launch()
	s.waitReady(10 * time.Second)
}

// launch starts the process without waiting for it to answer.
func (s *Server) launch() {
	s.t.Helper()
	ports := []string{"--port", strconv.Itoa(s.Port)}
	if s.TLS != nil {
		ports = []string{"--port", "0", "--tls-port", strconv.Itoa(s.Port)}
	}
	argv := []string{
		"--bind", "127.0.0.1",
		"--dir", s.Dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--repl-diskless-sync", "yes",
		"--repl-diskless-sync-delay", "0",
		"--loglevel", "warning",
		"--logfile", "redis.log",
	}
	argv = append(append(ports, argv...), s.args...)
	cmd := exec.Command(Binary, argv...)
	cmd.Dir = s.Dir
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	go cmd.Wait() //nolint:errcheck // reaped; the exit status does not matter
}

func (s *Server) waitReady(d time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := s.dialNet(200 * time.Millisecond)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			fmt.Fprint(c, "PING\r\n")
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			// -NOAUTH means it is up and wants a password.
			if rerr == nil && (strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH")) {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.Dir + "/redis.log")
			s.t.Fatalf("redis-server on %s not ready after %v: %v\n%s", s.Addr, d, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialNet connects to the server, over TLS if it serves TLS.
func (s *Server) dialNet(timeout time.Duration) (net.Conn, error) {
	if s.TLS == nil {
		return net.DialTimeout("tcp", s.Addr, timeout)
	}
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", s.Addr, s.TLS)
}

// tlsOptions are the redigo options that reach the server.
func (s *Server) tlsOptions() []redis.DialOption {
	if s.TLS == nil {
		return nil
	}
	return []redis.DialOption{redis.DialUseTLS(true), redis.DialTLSConfig(s.TLS)}
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Kill sends SIGKILL, as a crash would, and waits until the port is closed.
func (s *Server) Kill() {
	s.signal(syscall.SIGCONT) // a stopped process must be able to die
	s.signal(syscall.SIGKILL)
	for i := 0; i < 200; i++ {
		c, err := net.DialTimeout("tcp", s.Addr, 50*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
}

// Pause sends SIGSTOP: the server keeps its port open but answers nothing.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume sends SIGCONT after Pause.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

// Restart starts the server again on the same port and directory after Kill.
func (s *Server) Restart() {
	s.t.Helper()
	s.start()
}

// RestartLoading is Restart without the wait: the server may still be
// loading its dataset (answering -LOADING) when it returns.
func (s *Server) RestartLoading() {
	s.t.Helper()
	s.launch()
}

// Dial opens a redigo connection to the server.
func (s *Server) Dial(opts ...redis.DialOption) redis.Conn {
	s.t.Helper()
	opts = append(append([]redis.DialOption{redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(10 * time.Second)}, s.tlsOptions()...), opts...)
	c, err := redis.Dial("tcp", s.Addr, opts...)
	if err != nil {
		s.t.Fatalf("dial %s: %v", s.Addr, err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Do runs one command on a fresh connection and returns its reply.
func (s *Server) Do(cmd string, args ...any) (any, error) {
	opts := append([]redis.DialOption{redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(5 * time.Second)}, s.tlsOptions()...)
	c, err := redis.Dial("tcp", s.Addr, opts...)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(cmd, args...)
}

// ReplicaOf makes s a replica of m and waits until the link is up.
func (s *Server) ReplicaOf(m *Server) {
	s.t.Helper()
	if _, err := s.Do("REPLICAOF", "127.0.0.1", m.Port); err != nil {
		s.t.Fatalf("replicaof: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := redis.String(s.Do("INFO", "replication"))
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("replica %s: link to %s not up: %v %s", s.Addr, m.Addr, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
