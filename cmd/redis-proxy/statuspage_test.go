package main

// The status page in a real browser: headless Chromium driven by chromedp,
// in front of the whole binary (serve) and real redis-server processes.

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gomodule/redigo/redis"

	"github.com/redis-proxy/redis-proxy/internal/events"
	"github.com/redis-proxy/redis-proxy/internal/poll"
	"github.com/redis-proxy/redis-proxy/internal/redistest"
	"github.com/redis-proxy/redis-proxy/replication"
)

// screenshotDirVar names the directory the browser test writes its
// screenshots to; unset, a new temporary directory (kept, and logged).
const screenshotDirVar = "SCREENSHOT_DIR"

// chromium returns the path of the Chromium (or Chrome) binary, and skips
// the test when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (Debian: apt-get install chromium): the status page's browser test needs it")
	return ""
}

// browser starts a headless Chromium for the test and returns its context.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to sandbox as root
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser; its context must not time out
	// (that would end the browser), so start it here with none.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// within runs actions with a timeout.
func within(t *testing.T, ctx context.Context, d time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// pageWait polls a JavaScript condition in the page every 20ms until it is
// true, and returns when it was seen true.
func pageWait(t *testing.T, ctx context.Context, d time.Duration, what, cond string) time.Time {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if _, err := chromedp.Run(tctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		t.Fatalf("the page did not show %s within %v: %v\npage text:\n%s", what, d, err, pageText(ctx))
	}
	return time.Now()
}

func pageText(ctx context.Context) string {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return err.Error()
	}
	return s
}

// serverRows is the servers table as the page shows it: address → role
// (data attributes the script sets from /topology).
func serverRows(t *testing.T, ctx context.Context) map[string]string {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := chromedp.Run(tctx, chromedp.Evaluate[[][]string](
		`[...document.querySelectorAll('#servers tbody tr')].map(r => [r.dataset.addr, r.dataset.role])`))
	if err != nil {
		t.Fatalf("read the servers table: %v", err)
	}
	m := map[string]string{}
	for _, r := range rows {
		m[r[0]] = r[1]
	}
	return m
}

// masterShown is a page condition: addr's row says master and is the only
// one that does.
func masterShown(addr string) string {
	return fmt.Sprintf(`(() => {
		const rows = [...document.querySelectorAll('#servers tbody tr')];
		const masters = rows.filter(r => r.dataset.role === 'master').map(r => r.dataset.addr);
		return masters.length === 1 && masters[0] === %s;
	})()`, strconv.Quote(addr))
}

// eventShown is a page condition: an event of kind with seq above after is
// in the list.
func eventShown(kind string, after uint64) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#events li.event')].some(e => e.dataset.kind === %s && Number(e.dataset.seq) > %d)`,
		strconv.Quote(kind), after)
}

type screenshotter struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	paths []string
}

func newScreenshotter(t *testing.T, ctx context.Context) *screenshotter {
	dir := os.Getenv(screenshotDirVar)
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "redis-proxy-status-page-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &screenshotter{t: t, ctx: ctx, dir: dir}
}

// desktop and phone are the viewports the page is shot at.
var (
	desktopView = chromedp.EmulateViewport(1280, 800)
	phoneView   = chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2))
)

// shot saves the viewport (full: the whole page) as name.png.
func (s *screenshotter) shot(name string, full bool) {
	s.t.Helper()
	tctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	action := chromedp.CaptureScreenshot()
	if full {
		action = chromedp.FullScreenshot(100) // quality 100: PNG
	}
	png, err := chromedp.Run(tctx, action)
	if err != nil {
		s.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(s.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.paths = append(s.paths, p)
}

// phone shoots the whole page at a phone's width, then returns to the
// desktop's.
func (s *screenshotter) phone(name string) {
	s.t.Helper()
	s.phoneAt(name, true)
}

// phoneAt is phone, of the viewport only unless full (what a phone shows:
// a dialog, or the toast, is placed in the viewport, which a full-page shot
// stretches to the page's length), after the actions before (a scroll).
func (s *screenshotter) phoneAt(name string, full bool, before ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	within(s.t, s.ctx, 5*time.Second, "phone viewport", phoneView, chromedp.Sleep(300*time.Millisecond))
	within(s.t, s.ctx, 5*time.Second, "before the phone screenshot", before...)
	s.shot(name, full)
	within(s.t, s.ctx, 5*time.Second, "desktop viewport", desktopView, chromedp.Sleep(300*time.Millisecond))
}

// TestStatusPageInBrowser: the page shows every server with its role; after
// a kill -9 of the master it shows the new master and the failover event
// without a reload (the delay is measured); its switchover button, with
// the admin token entered and the confirmation accepted, moves the master,
// and without the token it is refused. Screenshots at desktop and phone
// widths are saved (SCREENSHOT_DIR, else a new temporary directory).
func TestStatusPageInBrowser(t *testing.T) {
	chrome := chromium(t)
	c := startCluster(t, 3, func(cfg *Config) { cfg.AdminToken = testToken }) // default timers: the failover a user gets
	old := c.srv[0]
	ctx := browser(t, chrome)
	shots := newScreenshotter(t, ctx)
	defer func() { t.Logf("screenshots:\n  %s", strings.Join(shots.paths, "\n  ")) }()

	// Some traffic, so the figures are not all zero.
	for i := 0; i < 50; i++ {
		c.set(fmt.Sprint("page:", i), "v")
	}

	within(t, ctx, 15*time.Second, "open the page", desktopView, chromedp.Navigate(c.adminURL("/")))
	pageWait(t, ctx, 10*time.Second, "every server", masterShown(old.Addr)+
		` && document.querySelectorAll('#servers tbody tr').length === 3 && document.querySelectorAll('#events li.event').length > 0`)
	rows := serverRows(t, ctx)
	want := map[string]string{old.Addr: "master", c.srv[1].Addr: "replica", c.srv[2].Addr: "replica"}
	if !maps.Equal(rows, want) {
		t.Errorf("servers shown %v, want %v", rows, want)
	}
	// No REDIS_PROXY_STATE_DIR: adding and removing servers is offered
	// disabled, with the proxy's reason, and never for the master.
	pageWait(t, ctx, 5*time.Second, "adding and removing servers disabled, with the reason", `(() => {
		const note = document.getElementById('members-note');
		const removes = [...document.querySelectorAll('#servers tbody button[data-remove]')];
		return document.getElementById('add-server').disabled && !note.hidden && note.textContent.includes('STATE_DIR') &&
			removes.length === 2 && removes.every(b => b.disabled);
	})()`)
	if removeOffered(t, ctx, old.Addr) {
		t.Errorf("the master's row offers to remove it")
	}
	shots.shot("desktop-healthy", false)
	shots.phone("phone-healthy")

	// kill -9 the master: the page follows without a reload.
	before, err := c.events("")
	if err != nil {
		t.Fatal(err)
	}
	crash := time.Now()
	old.Kill()
	shown := pageWait(t, ctx, 10*time.Second, "a new master and the failover event",
		fmt.Sprintf(`%s && [...document.querySelectorAll('#servers tbody tr')].some(r => r.dataset.role === 'master' && r.dataset.addr !== %s)`,
			eventShown(events.Failover, before.LastSeq), strconv.Quote(old.Addr)))
	after, err := c.events(fmt.Sprintf("?since=%d", before.LastSeq))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(after.Events, func(e events.Event) bool { return e.Kind == events.Failover })
	if i < 0 {
		t.Fatalf("the page shows a failover /events does not have: %+v", after.Events)
	}
	fo := after.Events[i]
	nw := fo.Servers[len(fo.Servers)-1]
	pageWait(t, ctx, 2*time.Second, "the new master "+nw, masterShown(nw))
	t.Logf("master killed: the page showed the new master %s and the failover event %v after the kill; the failover was recorded %v after the kill (%v without a master), the page showed it %v after that",
		nw, shown.Sub(crash).Round(time.Millisecond), fo.Time.Sub(crash).Round(time.Millisecond), fo.Duration.Round(time.Millisecond),
		shown.Sub(fo.Time).Round(time.Millisecond))
	if d := shown.Sub(crash); d > 2*time.Second {
		t.Errorf("the page showed the failover %v after the kill, want within 2s", d)
	}
	if d := shown.Sub(fo.Time); d > time.Second {
		t.Errorf("the page showed the failover %v after it was recorded, want within 1s (it long-polls /events)", d)
	}
	rows = serverRows(t, ctx)
	if rows[nw] != "master" || rows[old.Addr] == "master" {
		t.Errorf("servers shown after the failover: %v", rows)
	}
	shots.shot("desktop-failover", false)
	shots.shot("desktop-failover-full", true)
	shots.phone("phone-failover")

	// The switchover button: refused without the token...
	var target string
	for _, s := range c.srv[1:] {
		if s.Addr != nw {
			target = s.Addr
		}
	}
	pageWait(t, ctx, 10*time.Second, target+" linked to the new master, offered as a target",
		fmt.Sprintf(`!!document.querySelector('#servers tbody tr[data-addr=%s] button[data-target]') && !document.querySelector('#switchover').disabled`,
			strconv.Quote(target)))
	within(t, ctx, 5*time.Second, "switchover without the token",
		chromedp.Click(chromedp.ID("switchover")),
		chromedp.WaitVisible(chromedp.ID("confirm-ok")),
		chromedp.Click(chromedp.ID("confirm-ok")))
	pageWait(t, ctx, 10*time.Second, "the refusal", `(() => { const t = document.getElementById('toast');
		return !t.hidden && t.dataset.state === 'error' && t.textContent.includes('admin token'); })()`)
	if tv, err := c.topology(); err != nil || tv.Routing.Master != nw {
		t.Fatalf("after a refused switchover the master is %q (err %v), want %s", tv.Routing.Master, err, nw)
	}

	// ...done with it, from the target's row, confirmed in the dialog.
	within(t, ctx, 5*time.Second, "enter the token",
		chromedp.Click(chromedp.ID("token-button")),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), testToken),
		chromedp.Click(chromedp.ID("token-save")),
		chromedp.WaitNotVisible(chromedp.ID("token-dialog")))
	within(t, ctx, 5*time.Second, "open the switchover dialog",
		clickNow(fmt.Sprintf(`#servers tbody tr[data-addr=%s] button[data-target]`, strconv.Quote(target))),
		chromedp.WaitVisible(chromedp.ID("confirm-ok")))
	if sel, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("confirm-target"))); err != nil || sel != target {
		t.Errorf("the dialog offers %q (err %v), want %s chosen", sel, err, target)
	}
	shots.shot("desktop-confirm", false)
	start := time.Now()
	within(t, ctx, 5*time.Second, "confirm the switchover", chromedp.Click(chromedp.ID("confirm-ok")))
	moved := pageWait(t, ctx, 15*time.Second, "the switched master", masterShown(target)+` && (() => { const t = document.getElementById('toast');
		return !t.hidden && t.dataset.state === 'ok' && t.textContent.includes('Switched over'); })()`)
	t.Logf("switchover from the page: %s shown as master %v after the click", target, moved.Sub(start).Round(time.Millisecond))
	if tv, err := c.topology(); err != nil || tv.Routing.Master != target {
		t.Errorf("after the switchover the proxy routes to %q (err %v), want %s", tv.Routing.Master, err, target)
	}
	pageWait(t, ctx, 5*time.Second, "the switchover event", eventShown(events.Switchover, before.LastSeq))
	shots.shot("desktop-switchover", false)
}

// TestStatusPageProtectedReads: with ADMIN_PROTECT_READS the page still
// loads, shows nothing of the servers, and asks for the token; with it, the
// status appears.
func TestStatusPageProtectedReads(t *testing.T) {
	chrome := chromium(t)
	c := startCluster(t, 1, func(cfg *Config) { cfg.AdminToken, cfg.AdminProtectReads = testToken, true })
	ctx := browser(t, chrome)
	within(t, ctx, 15*time.Second, "open the page", desktopView, chromedp.Navigate(c.adminURL("/")))
	pageWait(t, ctx, 10*time.Second, "the token prompt",
		`!document.getElementById('locked').hidden && document.getElementById('content').hidden`)
	if txt := pageText(ctx); strings.Contains(txt, c.srv[0].Addr) {
		t.Errorf("the page shows a server without the token:\n%s", txt)
	}
	within(t, ctx, 5*time.Second, "a wrong token",
		chromedp.SendKeys(chromedp.ID("locked-token"), "not-the-token-0123456789"),
		chromedp.Click(chromedp.ID("locked-save")))
	pageWait(t, ctx, 10*time.Second, "the refusal of a wrong token",
		`!document.getElementById('locked-error').hidden && document.getElementById('locked-error').textContent.includes('not valid')`)
	within(t, ctx, 5*time.Second, "the token",
		chromedp.SendKeys(chromedp.ID("locked-token"), testToken),
		chromedp.Click(chromedp.ID("locked-save")))
	pageWait(t, ctx, 10*time.Second, "the status with the token", masterShown(c.srv[0].Addr)+
		` && document.getElementById('locked').hidden && [...document.querySelectorAll('#events li.event')].length > 0`)
}

// removeOffered says whether addr's row has a Remove button.
func removeOffered(t *testing.T, ctx context.Context, addr string) bool {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ok, err := chromedp.Run(tctx, chromedp.Evaluate[bool](fmt.Sprintf(
		`!!document.querySelector('#servers tbody tr[data-addr=%s] button[data-remove]')`, strconv.Quote(addr))))
	if err != nil {
		t.Fatalf("read the servers table: %v", err)
	}
	return ok
}

// dialogError is a page condition: the error paragraph id is shown and
// holds text.
func dialogError(id, text string) string {
	return fmt.Sprintf(`(() => { const e = document.getElementById(%s); return !e.hidden && e.textContent.includes(%s); })()`,
		strconv.Quote(id), strconv.Quote(text))
}

// TestStatusPageServers: a third Redis added through the page (the admin
// token entered, the form confirmed) is shown joining, then a replica,
// without a reload; removed through the page, it disappears from it, and
// from the proxy's list, and is left a replica, untouched. The master is
// never offered for removal; a page that asks anyway (its dialog opened
// before a switchover made that server the master) shows the proxy's
// refusal in the proxy's words, as it does for an add without the token or
// of a server already listed. Screenshots of the form and of the joining
// server at desktop and phone widths.
func TestStatusPageServers(t *testing.T) {
	chrome := chromium(t)
	c := startCluster(t, 2, func(cfg *Config) {
		cfg.AdminToken = testToken
		cfg.StateDir = t.TempDir()
	})
	a, b := c.srv[0], c.srv[1]
	adm := c.cfg.adminEnv()
	d := redistest.Start(t)
	mustSet(t, d, "d:own", "replaced by the master's data once added")
	// The master starts a full sync 3s after a replica asks (as a master
	// waiting for more replicas to serve them in one transfer does): d is
	// joining for that long at least, long enough to be seen and shot at
	// both widths. Its data is small: the copy itself takes milliseconds.
	if _, err := a.Do("CONFIG", "SET", "repl-diskless-sync-delay", "3"); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t, chrome)
	shots := newScreenshotter(t, ctx)
	defer func() { t.Logf("screenshots:\n  %s", strings.Join(shots.paths, "\n  ")) }()

	within(t, ctx, 15*time.Second, "open the page", desktopView, chromedp.Navigate(c.adminURL("/")))
	pageWait(t, ctx, 10*time.Second, "both servers, adding offered", masterShown(a.Addr)+
		` && document.querySelectorAll('#servers tbody tr').length === 2 && !document.getElementById('add-server').disabled &&
		document.getElementById('members-note').hidden`)
	// Marks this document: a reload would lose it.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded = true`)); err != nil {
		t.Fatal(err)
	}
	if removeOffered(t, ctx, a.Addr) || !removeOffered(t, ctx, b.Addr) {
		t.Errorf("Remove offered on the master %s: %v, on the replica %s: %v (want no, yes)",
			a.Addr, removeOffered(t, ctx, a.Addr), b.Addr, removeOffered(t, ctx, b.Addr))
	}

	// Without the token the proxy refuses, and the form says why.
	within(t, ctx, 5*time.Second, "add without the token",
		chromedp.Click(chromedp.ID("add-server")),
		chromedp.WaitVisible(chromedp.ID("add-addr")),
		chromedp.SendKeys(chromedp.ID("add-addr"), d.Addr),
		chromedp.Click(chromedp.ID("add-ok")))
	pageWait(t, ctx, 10*time.Second, "the refusal without the token", dialogError("add-error", "needs the admin token"))
	// A slip is caught before anything is sent.
	within(t, ctx, 5*time.Second, "a malformed address",
		chromedp.SetValue(chromedp.ID("add-addr"), "10.0.0.7"),
		chromedp.Click(chromedp.ID("add-ok")))
	pageWait(t, ctx, 5*time.Second, "the malformed address refused", dialogError("add-error", "host:port"))
	within(t, ctx, 5*time.Second, "cancel",
		chromedp.Click(chromedp.ID("add-cancel")),
		chromedp.WaitNotVisible(chromedp.ID("add-dialog")))
	if v, err := serversOf(adm); err != nil || v.Version != 0 || len(v.Servers) != 2 {
		t.Fatalf("GET /servers after the refusals: %+v, %v; want version 0, 2 servers", v, err)
	}

	within(t, ctx, 5*time.Second, "enter the token",
		chromedp.Click(chromedp.ID("token-button")),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), testToken),
		chromedp.Click(chromedp.ID("token-save")),
		chromedp.WaitNotVisible(chromedp.ID("token-dialog")))

	// A server already listed: the proxy's words.
	within(t, ctx, 5*time.Second, "add a server already listed",
		chromedp.Click(chromedp.ID("add-server")),
		chromedp.WaitVisible(chromedp.ID("add-addr")),
		chromedp.SetValue(chromedp.ID("add-addr"), b.Addr),
		chromedp.Click(chromedp.ID("add-ok")))
	pageWait(t, ctx, 10*time.Second, "the refusal of a server already listed",
		dialogError("add-error", b.Addr+" is already one of the servers"))

	// d, confirmed.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(e => { e.select(); return true; })(document.getElementById('add-addr'))`)); err != nil {
		t.Fatal(err)
	}
	within(t, ctx, 5*time.Second, "type d's address over the other", chromedp.SendKeys(chromedp.ID("add-addr"), d.Addr))
	pageWait(t, ctx, 5*time.Second, "the form ready", `document.getElementById('add-error').hidden &&
		document.querySelector('#add-dialog .token-note').hidden`)
	shots.shot("desktop-add-form", false)
	shots.phoneAt("phone-add-form", false)
	clicked := time.Now()
	within(t, ctx, 5*time.Second, "confirm the add", chromedp.Click(chromedp.ID("add-ok")))
	dRow := fmt.Sprintf(`document.querySelector('#servers tbody tr[data-addr=%s]')`, strconv.Quote(d.Addr))
	joining := pageWait(t, ctx, 5*time.Second, "d joining", fmt.Sprintf(`(() => { const r = %s;
		return !!r && r.dataset.joining === 'yes' && !!r.querySelector('.badge.join') && !document.getElementById('add-dialog').open; })()`, dRow))
	shots.shot("desktop-joining", false)
	shots.phoneAt("phone-joining", false, chromedp.ScrollIntoView(chromedp.CSS(fmt.Sprintf(`#servers tbody tr[data-addr=%s]`, strconv.Quote(d.Addr)))))
	tv, err := c.topology()
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(tv.Replication.Servers, func(s replication.ServerStatus) bool { return s.Addr == d.Addr }); i < 0 || !tv.Replication.Servers[i].Joining {
		t.Errorf("after the screenshots /topology no longer says d is joining (they may not show it): %+v", tv.Replication.Servers)
	}
	if slices.Contains(tv.Routing.Replicas, d.Addr) {
		t.Errorf("d routed while joining: %+v", tv.Routing)
	}
	replica := pageWait(t, ctx, 20*time.Second, "d a routed replica", fmt.Sprintf(`(() => { const r = %s;
		return !!r && r.dataset.role === 'replica' && r.dataset.joining === 'no' && r.querySelector('td.first').textContent.includes('routed replica'); })()`, dRow))
	t.Logf("add from the page: d shown joining %v after the click, a routed replica %v after it",
		joining.Sub(clicked).Round(time.Millisecond), replica.Sub(clicked).Round(time.Millisecond))
	if r, err := role(d); err != nil || r.role != "slave" || r.masterPort != a.Port {
		t.Errorf("d after the add: ROLE %v (%v), want a replica of %s", r, err, a.Addr)
	}
	if n, _ := redis.Int(d.Do("EXISTS", "d:own")); n != 0 {
		t.Errorf("d kept its own data after it was added")
	}
	if v, err := serversOf(adm); err != nil || v.Version != 1 || !slices.Equal(v.Servers, []string{a.Addr, b.Addr, d.Addr}) {
		t.Errorf("GET /servers after the add: %+v, %v", v, err)
	}
	shots.shot("desktop-added", false)

	// Removed, confirmed: it disappears.
	within(t, ctx, 5*time.Second, "open the remove dialog",
		clickNow(fmt.Sprintf(`#servers tbody tr[data-addr=%s] button[data-remove]`, strconv.Quote(d.Addr))),
		chromedp.WaitVisible(chromedp.ID("remove-ok")))
	if txt, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("remove-addr"))); err != nil || txt != d.Addr {
		t.Errorf("the remove dialog names %q (err %v), want %s", txt, err, d.Addr)
	}
	shots.shot("desktop-remove-confirm", false)
	clicked = time.Now()
	within(t, ctx, 5*time.Second, "confirm the remove", chromedp.Click(chromedp.ID("remove-ok")))
	gone := pageWait(t, ctx, 5*time.Second, "d gone", fmt.Sprintf(`!%s && document.querySelectorAll('#servers tbody tr').length === 2 &&
		!document.getElementById('remove-dialog').open`, dRow))
	t.Logf("remove from the page: d gone from the page %v after the click", gone.Sub(clicked).Round(time.Millisecond))
	if v, err := serversOf(adm); err != nil || v.Version != 2 || !slices.Equal(v.Servers, []string{a.Addr, b.Addr}) {
		t.Errorf("GET /servers after the remove: %+v, %v", v, err)
	}
	if r, err := role(d); err != nil || r.role != "slave" || r.masterPort != a.Port {
		t.Errorf("d after the remove: ROLE %v (%v), want it left a replica of %s", r, err, a.Addr)
	}

	// A page asking to remove the master: its dialog opened for b, then b
	// became the master.
	within(t, ctx, 5*time.Second, "open the remove dialog for b",
		clickNow(fmt.Sprintf(`#servers tbody tr[data-addr=%s] button[data-remove]`, strconv.Quote(b.Addr))),
		chromedp.WaitVisible(chromedp.ID("remove-ok")))
	var out, errb bytes.Buffer
	if rc := switchover(adm, b.Addr, &out, &errb); rc != 0 {
		t.Fatalf("switchover to %s: exit %d: %s", b.Addr, rc, errb.String())
	}
	within(t, ctx, 5*time.Second, "confirm the remove of the master", chromedp.Click(chromedp.ID("remove-ok")))
	pageWait(t, ctx, 10*time.Second, "the refusal to remove the master", dialogError("remove-error", b.Addr+" is the master"))
	msg, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("remove-error")))
	t.Logf("removing the master from a stale page: %q", msg)
	shots.shot("desktop-remove-refused", false)
	within(t, ctx, 5*time.Second, "cancel",
		chromedp.Click(chromedp.ID("remove-cancel")),
		chromedp.WaitNotVisible(chromedp.ID("remove-dialog")))
	pageWait(t, ctx, 5*time.Second, "b the master", masterShown(b.Addr))
	if removeOffered(t, ctx, b.Addr) || !removeOffered(t, ctx, a.Addr) {
		t.Errorf("after the switchover Remove is offered on the master %s: %v, on the replica %s: %v (want no, yes)",
			b.Addr, removeOffered(t, ctx, b.Addr), a.Addr, removeOffered(t, ctx, a.Addr))
	}
	if v, err := serversOf(adm); err != nil || v.Version != 2 || !slices.Equal(v.Servers, []string{a.Addr, b.Addr}) {
		t.Errorf("GET /servers after the refusal: %+v, %v", v, err)
	}
	if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded === true`)); err != nil || !ok {
		t.Errorf("the page was reloaded (%v)", err)
	}
}

// TestStatusPageStandby: on the standby of a pair (two real binaries, run
// as TestServersPairAgree runs them) the page offers no change the proxy
// would refuse: adding and every Remove are disabled, with the proxy's
// reason, which names the active proxy, as switchover is; the active
// proxy's page offers them.
func TestStatusPageStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary against real redis-server processes: skipped under -short (the unit layer)")
	}
	chrome := chromium(t)
	r1, r2 := redistest.Start(t), redistest.Start(t)
	r2.ReplicaOf(r1)
	a, b := newPair(t, []string{r1.Addr, r2.Addr})
	a.start()
	b.start()
	poll.Until(t, 10*time.Second, "proxy-a active, proxy-b standby", func() bool { return a.active() && !b.active() })
	ctx := browser(t, chrome)
	shots := newScreenshotter(t, ctx)
	defer func() { t.Logf("screenshots:\n  %s", strings.Join(shots.paths, "\n  ")) }()

	within(t, ctx, 15*time.Second, "open the standby's page", desktopView, chromedp.Navigate("http://"+b.adm.Listen+"/"))
	pageWait(t, ctx, 10*time.Second, "changes disabled on the standby, with the reason", `(() => {
		const note = document.getElementById('members-note');
		const removes = [...document.querySelectorAll('#servers tbody button[data-remove]')];
		return document.querySelectorAll('#servers tbody tr').length === 2 &&
			document.getElementById('add-server').disabled && !note.hidden &&
			note.textContent.includes('not the active one') && note.textContent.includes('127.0.0.1') &&
			removes.length === 1 && removes.every(b => b.disabled) &&
			document.getElementById('switchover').disabled && !document.getElementById('switchover-note').hidden;
	})()`)
	note, _ := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("members-note")))
	t.Logf("the standby's note: %q", note)
	shots.shot("desktop-standby", false)

	within(t, ctx, 15*time.Second, "open the active proxy's page", chromedp.Navigate("http://"+a.adm.Listen+"/"))
	pageWait(t, ctx, 10*time.Second, "changes offered on the active proxy", `(() => {
		const removes = [...document.querySelectorAll('#servers tbody button[data-remove]')];
		return document.querySelectorAll('#servers tbody tr').length === 2 &&
			!document.getElementById('add-server').disabled && document.getElementById('members-note').hidden &&
			removes.length === 1 && !removes[0].disabled;
	})()`)
}

// clickNow clicks the element sel selects in one step in the page: the
// servers table is rendered again at each update, so a node found first
// and clicked after (chromedp.Click) may be gone by then.
func clickNow(sel string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		ok, err := chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) return false; e.click(); return true; })()`, strconv.Quote(sel)))(ctx, t)
		if err == nil && !ok {
			err = fmt.Errorf("no element %s", sel)
		}
		return chromedp.Void{}, err
	}
}
