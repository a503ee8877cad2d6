// Command idleclients opens many idle client connections to a RESP server
// (normally redis-proxy), checks that every one of them is really served
// (PING -> +PONG), holds them, and then reports:
//
//   - the resident set size (VmRSS / VmHWM from /proc/PID/status) of a given
//     process (the proxy), before the clients connected and while they are held;
//   - the backend Redis "connected_clients" (INFO clients), before and while held
//     (the figure includes the INFO connection itself);
//   - how many of the held connections still answer a second PING after the
//     measurement (clients_alive).
//
// It is stdlib-only and must run as a separate process from the proxy, since
// both sides need one file descriptor per connection.
//
// Output is one key=value pair per line on stdout (parsed by bench/bench.sh);
// diagnostics go to stderr. The exit status is non-zero only when the
// measurement itself could not be made (bad flags, /proc unreadable, backend
// unreachable); connections that fail are reported as failed=N and
// first_error=... instead.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "", "address to open the idle clients to (host:port), e.g. the proxy")
	n := flag.Int("n", 10000, "number of client connections")
	pid := flag.Int("pid", 0, "pid whose VmRSS is reported (0: none)")
	backend := flag.String("backend", "", "backend Redis address for INFO clients (empty: skip)")
	ping := flag.String("ping", "inline", "how to PING: inline (PING\\r\\n) or resp (*1\\r\\n$4\\r\\nPING\\r\\n)")
	conc := flag.Int("concurrency", 200, "connections being set up concurrently")
	timeout := flag.Duration("timeout", 10*time.Second, "timeout for each dial and each PING round trip")
	hold := flag.Duration("hold", time.Second, "how long to hold all connections before measuring")
	flag.Parse()

	if *addr == "" || *n <= 0 || *conc <= 0 {
		fmt.Fprintln(os.Stderr, "idleclients: -addr is required and -n, -concurrency must be > 0")
		os.Exit(2)
	}
	var pingCmd []byte
	switch *ping {
	case "inline":
		pingCmd = []byte("PING\r\n")
	case "resp":
		pingCmd = []byte("*1\r\n$4\r\nPING\r\n")
	default:
		fmt.Fprintf(os.Stderr, "idleclients: -ping must be inline or resp, got %q\n", *ping)
		os.Exit(2)
	}

	fatal := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "idleclients: "+format+"\n", args...)
		os.Exit(1)
	}

	// Baseline figures, before any client connects.
	if *pid > 0 {
		rss, hwm, err := procMem(*pid)
		if err != nil {
			fatal("%v", err)
		}
		fmt.Printf("rss_before_kib=%d\nhwm_before_kib=%d\n", rss, hwm)
	}
	if *backend != "" {
		cc, err := connectedClients(*backend, *timeout)
		if err != nil {
			fatal("backend INFO clients: %v", err)
		}
		fmt.Printf("backend_clients_before=%d\n", cc)
	}

	conns := make([]net.Conn, *n)
	var (
		failed   atomic.Int64
		errOnce  sync.Once
		firstErr error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	workers := min(*conc, *n)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				c, err := openAndPing(*addr, pingCmd, *timeout, buf)
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	setup := time.Since(start)

	ok := *n - int(failed.Load())
	fmt.Printf("clients_requested=%d\nclients_ok=%d\nfailed=%d\nsetup_ms=%d\n",
		*n, ok, failed.Load(), setup.Milliseconds())
	if firstErr != nil {
		fmt.Printf("first_error=%s\n", strings.ReplaceAll(firstErr.Error(), "\n", " "))
	}

	time.Sleep(*hold)

	if *pid > 0 {
		rss, hwm, err := procMem(*pid)
		if err != nil {
			// The process may have died under load: report, don't hide it.
			fmt.Printf("rss_error=%s\n", err)
		} else {
			fmt.Printf("rss_kib=%d\nhwm_kib=%d\n", rss, hwm)
		}
	}
	if *backend != "" {
		cc, err := connectedClients(*backend, *timeout)
		if err != nil {
			fatal("backend INFO clients: %v", err)
		}
		fmt.Printf("backend_clients=%d\n", cc)
	}

	// Check the held connections are still served after the measurement
	// (the server did not drop them while we waited): PING each again.
	var alive atomic.Int64
	next.Store(0)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				if conns[i] != nil && pingConn(conns[i], pingCmd, *timeout, buf) == nil {
					alive.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("clients_alive=%d\n", alive.Load())

	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// openAndPing dials addr, sends ping and expects "+PONG\r\n" back.
func openAndPing(addr string, ping []byte, timeout time.Duration, buf []byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	if err := pingConn(c, ping, timeout, buf); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// pingConn sends ping on c and expects "+PONG\r\n" back.
func pingConn(c net.Conn, ping []byte, timeout time.Duration, buf []byte) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(ping); err != nil {
		return fmt.Errorf("write PING: %w", err)
	}
	got := 0
	for !bytes.Contains(buf[:got], []byte("\r\n")) {
		if got == len(buf) {
			return fmt.Errorf("PING reply too long: %q", buf[:got])
		}
		m, err := c.Read(buf[got:])
		got += m
		if err != nil && !bytes.Contains(buf[:got], []byte("\r\n")) {
			return fmt.Errorf("read PING reply (got %q): %w", buf[:got], err)
		}
	}
	if !bytes.Equal(buf[:got], []byte("+PONG\r\n")) {
		return fmt.Errorf("unexpected PING reply %q", buf[:got])
	}
	return nil
}

// procMem returns VmRSS and VmHWM (KiB) of pid.
func procMem(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	rss, hwm = -1, -1
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v) // "12345 kB"
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			rss, _ = strconv.ParseInt(f[0], 10, 64)
		case "VmHWM":
			hwm, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	if rss < 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// connectedClients sends INFO clients over a fresh connection and returns the
// connected_clients field. The figure includes this connection itself.
func connectedClients(addr string, timeout time.Duration) (int, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "*2\r\n$4\r\nINFO\r\n$7\r\nclients\r\n"); err != nil {
		return 0, err
	}
	r := bufio.NewReader(c)
	hdr, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	hdr = strings.TrimRight(hdr, "\r\n")
	if !strings.HasPrefix(hdr, "$") {
		return 0, fmt.Errorf("unexpected INFO reply %q", hdr)
	}
	size, err := strconv.Atoi(hdr[1:])
	if err != nil || size < 0 {
		return 0, fmt.Errorf("bad INFO bulk length %q", hdr)
	}
	body := make([]byte, size+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(body[:size])) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "connected_clients:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("no connected_clients in INFO clients")
}
