package proxy

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/internal/resptest"
)

// lagRelay forwards connections to addr, delaying what addr sends back by
// delay: a replica that replicates through it trails its master by that
// much.
func lagRelay(t *testing.T, addr string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				in.Close()
				continue
			}
			go func() { io.Copy(out, in); out.Close() }()
			go func() {
				type chunk struct {
					at time.Time
					b  []byte
				}
				q := make(chan chunk, 1<<16)
				go func() {
					for c := range q {
						time.Sleep(time.Until(c.at))
						if _, err := in.Write(c.b); err != nil {
							return
						}
					}
				}()
				buf := make([]byte, 64<<10)
				for {
					n, err := out.Read(buf)
					if n > 0 {
						q <- chunk{time.Now().Add(delay), append([]byte(nil), buf[:n]...)}
					}
					if err != nil {
						close(q)
						in.Close()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// Read-your-writes: a client writes and reads back at once, with reads on
// a replica that trails the master by 200ms. Without the option most reads
// are stale; with it none is.
func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	rounds := 100000
	if testing.Short() || raceDetector {
		rounds = 20000 // the race detector slows the proxy several times
	}
	m := redistest.Start(t)
	r := redistest.Start(t)
	relay := lagRelay(t, m.Addr, 200*time.Millisecond)
	host, port, _ := net.SplitHostPort(relay)
	if _, err := r.Do("REPLICAOF", host, port); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the replica linked", func() bool {
		v, err := r.Do("INFO", "replication")
		return err == nil && contains(v, "master_link_status:up")
	})
	stale := map[bool]int{}
	for _, ryw := range []bool{false, true} {
		tp := startProxy(t, Config{ReadFrom: ReadFromReplicas, ReadYourWrites: ryw, MaxReplicaLag: time.Second}, m.Addr, r.Addr)
		c := resptest.Dial(t, tp.Addr)
		key := fmt.Sprintf("ryw:%v", ryw)
		start := time.Now()
		for i := range rounds {
			v := strconv.Itoa(i)
			got, err := c.Pipeline(resptest.Cmds([]string{"SET", key, v}, []string{"GET", key}), 2, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if string(got[1]) != "$"+strconv.Itoa(len(v))+"\r\n"+v+"\r\n" {
				stale[ryw]++
			}
		}
		t.Logf("ReadYourWrites=%v: %d stale reads of %d (%v)", ryw, stale[ryw], rounds, time.Since(start).Round(time.Millisecond))
	}
	if stale[true] != 0 {
		t.Errorf("%d stale reads with ReadYourWrites", stale[true])
	}
	if stale[false] < rounds/2 {
		t.Errorf("only %d stale reads of %d without ReadYourWrites: the replica does not lag, the test proves nothing", stale[false], rounds)
	}
}

func contains(v any, s string) bool {
	b, _ := v.([]byte)
	return strings.Contains(string(b), s)
}
