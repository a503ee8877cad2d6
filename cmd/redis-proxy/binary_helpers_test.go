package main

// The binary as an operator runs it: built as `make build` builds it
// (proxybin), started as a process with its environment, signalled with
// kill, and read through its log and its admin API.

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/proxybin"
)

// proc is a running redis-proxy process.
type proc struct {
	t     *testing.T
	cmd   *exec.Cmd
	logs  *procLog // its stderr (REDIS_PROXY_LOG_FORMAT=json)
	done  chan struct{}
	admin string // host:port of its admin API
	// exit is the process's exit code, once done is closed.
	exit int
}

// startBinary builds redis-proxy and runs it with env (REDIS_PROXY_*
// variables; LOG_FORMAT json is added), returning once its /healthz
// answers 200. The process gets SIGKILL when the test ends if it still
// runs.
func startBinary(t *testing.T, env map[string]string) *proc {
	t.Helper()
	bin := proxybin.Build(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), envPrefix + "_LOG_FORMAT=json"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	pr := &proc{t: t, cmd: cmd, logs: &procLog{}, done: make(chan struct{}), admin: env[adminListenVar]}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	copied := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			pr.logs.add(sc.Text())
		}
		io.Copy(io.Discard, stderr)
		close(copied)
	}()
	go func() {
		<-copied
		cmd.Wait()
		pr.exit = cmd.ProcessState.ExitCode()
		close(pr.done)
	}()
	t.Cleanup(func() {
		select {
		case <-pr.done:
		default:
			cmd.Process.Kill()
			<-pr.done
		}
		if t.Failed() {
			t.Logf("redis-proxy log (last 60 lines):\n%s", pr.logs.tail(60))
		}
	})
	poll.Until(t, 15*time.Second, "redis-proxy's /healthz 200", func() bool {
		select {
		case <-pr.done:
			t.Fatalf("redis-proxy exited with %d while starting:\n%s", pr.exit, pr.logs.tail(30))
		default:
		}
		resp, err := httpc.Get("http://" + pr.admin + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return pr
}

// signal sends sig to the process.
func (pr *proc) signal(sig syscall.Signal) {
	pr.t.Helper()
	if err := pr.cmd.Process.Signal(sig); err != nil {
		pr.t.Fatalf("signal %v: %v", sig, err)
	}
}

// running fails the test if the process has exited.
func (pr *proc) running() {
	pr.t.Helper()
	select {
	case <-pr.done:
		pr.t.Fatalf("redis-proxy exited with code %d", pr.exit)
	default:
	}
}

// stop sends SIGTERM and returns the exit code.
func (pr *proc) stop() int {
	pr.t.Helper()
	pr.signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(10 * time.Second):
		pr.t.Fatalf("redis-proxy did not exit 10s after SIGTERM")
	}
	return pr.exit
}

// get fetches path from the admin API.
func (pr *proc) get(path string) string {
	pr.t.Helper()
	resp, err := httpc.Get("http://" + pr.admin + path)
	if err != nil {
		pr.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		pr.t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b)
}

// post sends POST path to the admin API (from loopback, with no token).
func (pr *proc) post(path string) (int, string) {
	pr.t.Helper()
	resp, err := httpc.Post("http://"+pr.admin+path, "", nil)
	if err != nil {
		pr.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// logged waits up to d for a log line after from with message msg, and
// returns the lines with it.
func (pr *proc) logged(from time.Time, d time.Duration, msg string) []string {
	pr.t.Helper()
	var lines []string
	poll.Until(pr.t, d, "a log line "+msg, func() bool {
		lines = pr.logs.linesSince(from, msg)
		return len(lines) > 0
	})
	return lines
}

// procLog is a process's log lines, each with when it was read.
type procLog struct {
	mu    sync.Mutex
	lines []procLine
}

type procLine struct {
	at   time.Time
	msg  string // the JSON line's msg
	text string
}

func (l *procLog) add(text string) {
	var rec struct {
		Msg string `json:"msg"`
	}
	json.Unmarshal([]byte(text), &rec)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, procLine{time.Now(), rec.Msg, text})
}

// linesSince returns the lines logged after t whose message is msg.
func (l *procLog) linesSince(t time.Time, msg string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, pl := range l.lines {
		if pl.at.After(t) && pl.msg == msg {
			out = append(out, pl.text)
		}
	}
	return out
}

func (l *procLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, pl := range l.lines[max(0, len(l.lines)-n):] {
		b.WriteString(pl.text + "\n")
	}
	return b.String()
}
