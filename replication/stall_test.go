package replication

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/redistest"
)

// stallHelperEnv names the servers a re-executed test binary manages in
// TestStallHelperProcess.
const stallHelperEnv = "REPLICATION_STALL_HELPER_SERVERS"

// The manager's own process is frozen (SIGSTOP, what docker pause amounts
// to) for six DownAfter while it has authority and its servers stay healthy
// and keep taking writes. After SIGCONT no server is declared down, nothing
// is promoted or demoted, and the write made during the freeze is kept.
func TestManagerProcessStall(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	b.ReplicaOf(a)

	var logs syncBuffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestStallHelperProcess$")
	cmd.Env = append(os.Environ(), stallHelperEnv+"="+a.Addr+","+b.Addr)
	cmd.Stderr = &logs
	stdin, err := cmd.StdinPipe() // the helper exits when it closes
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start manager process: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("manager process log:\n%s", logs.String())
		}
	})
	published := fmt.Sprintf("master=%s replicas=[%s]", a.Addr, b.Addr)
	waitUntil(t, "a with b published by the manager process", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), published)
	})

	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	mustDo(t, a, "SET", "during-stall", "kept")
	time.Sleep(6 * testDownAfter)
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the manager acting again after the stall", 3*time.Second, func() bool {
		return strings.Contains(logs.String(), "acting again after stall")
	})
	time.Sleep(2 * testDownAfter) // room for a wrong decision to show

	out := logs.String()
	if !strings.Contains(out, "stall detected") {
		t.Error(`no "stall detected" in the manager's log`)
	}
	for _, bad := range []string{`"server down"`, `"promoting replica"`, "demoting master", `"master lost"`} {
		if strings.Contains(out, bad) {
			t.Errorf("manager logged %s after its own stall", bad)
		}
	}
	if r, _ := role(t, a); r != "master" {
		t.Errorf("a's ROLE = %s, want master", r)
	}
	if r, port := role(t, b); r != "slave" || port != fmt.Sprint(a.Port) {
		t.Errorf("b's ROLE = %s of port %s, want replica of %d", r, port, a.Port)
	}
	if v, err := redis.String(a.Do("GET", "during-stall")); v != "kept" {
		t.Errorf("write acknowledged during the stall: GET = %q, %v", v, err)
	}
}

// TestStallHelperProcess is the manager process of TestManagerProcessStall,
// not a test of its own: it runs a manager with authority over the servers
// in $REPLICATION_STALL_HELPER_SERVERS, logging to stderr, until its stdin
// is closed.
func TestStallHelperProcess(t *testing.T) {
	servers := os.Getenv(stallHelperEnv)
	if servers == "" {
		t.Skip("run by TestManagerProcessStall in a process of its own")
	}
	m, err := NewManager(Config{
		Servers:       strings.Split(servers, ","),
		Authority:     true,
		CheckInterval: testInterval,
		DownAfter:     testDownAfter,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer (os/exec's copying
// goroutine) and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
