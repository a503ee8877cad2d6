package vip

// The heartbeat flood: a third namespace sends forged datagrams at the
// backup as fast as it can while the pair runs, and the test records every
// role change of both nodes and every change of the VIP on either
// interface. See TestNetnsHeartbeatFlood.

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var floodPackets = flag.Int("flood-packets", 1_000_000, "forged datagrams TestNetnsHeartbeatFlood sends at the backup (-short: 100000 unless set)")

const helperFloodConf = "VIP_TEST_FLOOD" // JSON floodConfig, for "flood"

func init() { helpers["flood"] = helperFlood }

// floodConfig tells the flooder what to send. Each datagram is one of four
// kinds, in turn: random bytes or an advert signed with the wrong key
// (claiming to be the master at priority 254, or releasing at priority 0),
// each from the flooder's own address (not a peer) and with the source
// forged to the master's address and port, which is what an attacker on
// the same segment can do.
type floodConfig struct {
	Own    string // the flooder's address, ip:port
	Spoof  string // the peer it impersonates, ip:port
	Target string // the backup, ip:port
	Count  int
}

// floodResult is the flooder's one line of output.
type floodResult struct {
	Sent    int
	Seconds float64
	Errors  int
	Err     string `json:",omitempty"`
}

func helperFlood() int {
	var fc floodConfig
	res := floodResult{}
	defer func() { json.NewEncoder(os.Stdout).Encode(res) }()
	if err := json.Unmarshal([]byte(os.Getenv(helperFloodConf)), &fc); err != nil {
		res.Err = err.Error()
		return 2
	}
	own, spoof, target := netip.MustParseAddrPort(fc.Own), netip.MustParseAddrPort(fc.Spoof), netip.MustParseAddrPort(fc.Target)
	// A pool of distinct datagrams, sent round-robin.
	const pool = 1024
	pkts := make([][]byte, pool)
	for i := range pkts {
		src := own
		if i%4 >= 2 {
			src = spoof
		}
		var payload []byte
		if i%2 == 0 {
			payload = make([]byte, 1+i%200)
			rand.Read(payload)
		} else {
			a := Advert{Priority: 254, Healthy: true, Role: Master, Interval: nsInterval, Sender: spoof.Addr(),
				BootID: uint64(i), Seq: uint64(i), Time: time.Now(), Payload: Payload{Epoch: 1 << 40, Master: "10.66.6.6:6379"}}
			if i%8 == 3 {
				a.Priority, a.Role = 0, Init
			}
			payload, _ = Marshal(a, []byte("forged-key-forged-key-forged-key"))
		}
		pkts[i] = rawUDP(src, target, payload)
	}

	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW) // IP_HDRINCL: we write the source
	if err != nil {
		res.Err = fmt.Sprintf("raw socket: %v", err)
		return 1
	}
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	var dst unix.RawSockaddrInet4
	dst.Family = unix.AF_INET
	dst.Addr = target.Addr().As4()

	const batch = 64
	hdrs := make([]mmsghdr, batch)
	iovs := make([]unix.Iovec, batch)
	start := time.Now()
	for res.Sent < fc.Count {
		k := min(batch, fc.Count-res.Sent)
		for j := 0; j < k; j++ {
			p := pkts[(res.Sent+j)%pool]
			iovs[j].Base = &p[0]
			iovs[j].SetLen(len(p))
			hdrs[j].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&dst)), Namelen: unix.SizeofSockaddrInet4, Iov: &iovs[j], Iovlen: 1}
		}
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdrs[0])), uintptr(k), 0, 0, 0)
		switch {
		case e == unix.EINTR:
		case e == unix.ENOBUFS || e == unix.EAGAIN:
			res.Errors++
			time.Sleep(50 * time.Microsecond)
		case e != 0:
			res.Err = fmt.Sprintf("sendmmsg: %v", e)
			return 1
		default:
			res.Sent += int(r)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return 0
}

// rawUDP returns an IPv4 datagram from src to dst carrying payload, for a
// socket with IP_HDRINCL (the kernel fills in the total length, the id and
// the header checksum; a zero UDP checksum means none).
func rawUDP(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[8], b[9] = 64, syscall.IPPROTO_UDP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:16], s4[:])
	copy(b[16:20], d4[:])
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

// udpSNMP reads the Udp counters of the namespace process pid is in from
// /proc/net/snmp.
func udpSNMP(t *testing.T, pid int) map[string]uint64 {
	t.Helper()
	out, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/snmp", pid))
	if err != nil {
		t.Fatalf("read /proc/net/snmp of %d: %v", pid, err)
	}
	var names []string
	m := map[string]uint64{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, v := range f[1:] {
			n, _ := strconv.ParseUint(v, 10, 64)
			m[names[i]] = n
		}
	}
	return m
}

// udpQueue returns the receive queue (bytes) and drop count of pid's UDP
// socket on port, from /proc/net/udp.
func udpQueue(pid int, port uint16) (rxQueue, drops uint64, ok bool) {
	out, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/udp", pid))
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(out), "\n")[1:] {
		f := strings.Fields(line)
		// sl local_address rem_address st tx_queue:rx_queue ... drops
		if len(f) < 13 || !strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) {
			continue
		}
		_, rx, _ := strings.Cut(f[4], ":")
		rxQueue, _ = strconv.ParseUint(rx, 16, 64)
		drops, _ = strconv.ParseUint(f[12], 10, 64)
		return rxQueue, drops, true
	}
	return 0, 0, false
}

// vipEvent is a change of the VIP on a node's interface, as `ip monitor`
// reported it.
type vipEvent struct {
	node string
	at   time.Time
	line string
}

// monitorVIP reports every change of the VIP on x's interfaces until the
// test ends. It returns once the monitor runs.
func (tp *netnsTopo) monitorVIP(x string, mu *sync.Mutex, events *[]vipEvent) {
	t := tp.t
	t.Helper()
	cmd := exec.Command("ip", "-n", tp.ns(x), "-o", "monitor", "address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), strings.Split(nsVIP, "/")[0]) {
				mu.Lock()
				*events = append(*events, vipEvent{node: x, at: time.Now(), line: sc.Text()})
				mu.Unlock()
			}
		}
	}()
	// ip monitor has subscribed once it answers; a moment suffices.
	time.Sleep(50 * time.Millisecond)
}

// collect gathers p's events until stop is closed.
func (p *nodeProc) collect(stop <-chan struct{}) <-chan []helperEvent {
	out := make(chan []helperEvent, 1)
	go func() {
		var evs []helperEvent
		for {
			select {
			case e := <-p.events:
				evs = append(evs, e)
			case <-stop:
				out <- evs
				return
			}
		}
	}()
	return out
}

// TestNetnsHeartbeatFlood: while a (priority 150) is master and b its
// backup, a third namespace on the same bridge sends -flood-packets forged
// datagrams to b's advert port as fast as it can through a raw socket:
// random bytes and adverts signed with the wrong key, half from its own
// address, half with a's address and port forged. Neither node may change
// role and the VIP may neither move nor appear on b (`ip monitor address`
// in both namespaces), during the flood or a master-down interval after
// it. It logs the flood rate, what the backup's socket queued and dropped,
// and the backup's counters.
func TestNetnsHeartbeatFlood(t *testing.T) {
	count := *floodPackets
	if testing.Short() && !flagSet("flood-packets") {
		count = 100_000
	}
	tp := newNetnsTopo(t)
	a, b := startPair(t, tp)
	var mu sync.Mutex
	var vipEvents []vipEvent
	tp.monitorVIP("a", &mu, &vipEvents)
	tp.monitorVIP("b", &mu, &vipEvents)
	time.Sleep(300 * time.Millisecond)

	stop := make(chan struct{})
	aEvents, bEvents := a.collect(stop), b.collect(stop)
	pid := b.cmd.Process.Pid // ip netns exec runs the helper in its own process
	before := udpSNMP(t, pid)
	// The backup's socket, every 10ms: the deepest queue, and when drops
	// happened.
	var maxQueue uint64
	var dropTimes []string
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		_, last, _ := udpQueue(pid, DefaultPort)
		for t0 := time.Now(); ; time.Sleep(10 * time.Millisecond) {
			select {
			case <-stop:
				return
			default:
			}
			q, d, ok := udpQueue(pid, DefaultPort)
			if !ok {
				continue
			}
			maxQueue = max(maxQueue, q)
			if d != last {
				dropTimes = append(dropTimes, fmt.Sprintf("+%d@%v", d-last, time.Since(t0).Round(10*time.Millisecond)))
				last = d
			}
		}
	}()
	conf, _ := json.Marshal(floodConfig{Own: "10.77.0.3:40000", Spoof: "10.77.0.1:5405", Target: "10.77.0.2:5405", Count: count})
	cmd := exec.Command("ip", "netns", "exec", tp.c, tp.exe)
	cmd.Env = append(os.Environ(), helperEnv+"=flood", helperFloodConf+"="+string(conf))
	started := time.Now()
	out, err := cmd.Output()
	flooded := time.Since(started)
	var res floodResult
	if jerr := json.Unmarshal(out, &res); jerr != nil || err != nil || res.Err != "" {
		t.Fatalf("flooder: %v %v %s %s", err, jerr, out, res.Err)
	}
	// A backup that lost the master's adverts claims a master-down
	// interval after the last one it heard; wait that long after the flood.
	time.Sleep(MasterDownInterval(100, nsInterval) + nsInterval)
	close(stop)
	<-sampled
	after := udpSNMP(t, pid)
	aEv, bEv := <-aEvents, <-bEvents

	rate := float64(res.Sent) / res.Seconds
	t.Logf("flood: %d forged datagrams in %.2fs (%.0f/s; %d send retries), flooder process %v",
		res.Sent, res.Seconds, rate, res.Errors, flooded.Round(time.Millisecond))
	d := func(k string) uint64 { return after[k] - before[k] }
	t.Logf("backup's namespace, UDP during the flood: InDatagrams +%d, RcvbufErrors +%d, InErrors +%d",
		d("InDatagrams"), d("RcvbufErrors"), d("InErrors"))
	t.Logf("backup's socket: deepest receive queue seen %d bytes; drops (count@time since the flood started) %v", maxQueue, dropTimes)

	for _, e := range aEv {
		if e.Ev == "role" {
			t.Errorf("a changed role during the flood: %s -> %s (%s) at %v", e.From, e.To, e.Reason, time.Unix(0, e.At).Sub(started))
		}
	}
	for _, e := range bEv {
		if e.Ev == "role" {
			t.Errorf("b changed role during the flood: %s -> %s (%s) at %v", e.From, e.To, e.Reason, time.Unix(0, e.At).Sub(started))
		}
	}
	mu.Lock()
	for _, e := range vipEvents {
		t.Errorf("the VIP changed on %s at %v: %s", e.node, e.at.Sub(started), e.line)
	}
	mu.Unlock()
	if !tp.holdsVIP("a") || tp.holdsVIP("b") {
		t.Errorf("after the flood: a holds the VIP %v, b %v", tp.holdsVIP("a"), tp.holdsVIP("b"))
	}

	// The backup stops at once (it holds nothing); its counters come with
	// its exit. Every forged datagram was rejected or, the socket's queue
	// full, dropped, and the flood was seen both before any decoding (a
	// stranger's) and at the MAC (a's address forged).
	b.cmd.Process.Signal(syscall.SIGTERM)
	st := b.wait(t, 5*time.Second, "stats", "").Stats // logged by wait
	b.wait(t, 5*time.Second, "exit", "")
	var rejected uint64
	for _, r := range Reasons {
		rejected += st.Rejected[r]
	}
	if st.Rejected[ReasonNotPeer] == 0 || st.Rejected[ReasonBadMAC] == 0 || st.Rejected[ReasonSelf] != 0 {
		t.Errorf("rejected %v", nonZero(st.Rejected))
	}
	// Not exactly: a datagram may be lost before the socket (the veth
	// backlog), and the drops include any of a's adverts the full queue
	// lost, at most one an interval.
	adverts := uint64(time.Since(started) / nsInterval)
	if got := rejected + st.RecvDropped; got < uint64(res.Sent)*99/100 || got > uint64(res.Sent)+adverts {
		t.Errorf("%d rejected and %d dropped of %d forged", rejected, st.RecvDropped, res.Sent)
	}
	if st.RecvDropped != d("RcvbufErrors") {
		t.Errorf("the backup counted %d drops, the kernel %d", st.RecvDropped, d("RcvbufErrors"))
	}
	t.Logf("backup b: %d adverts heard from a in all, %d deferrals of its takeover, receive buffer %d bytes",
		st.AdvertsReceived, st.TakeoverDeferrals, st.RecvBuffer)
	a.terminate(t)
}

func flagSet(name string) (set bool) {
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
