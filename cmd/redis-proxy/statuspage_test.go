package main

// The status page in a real browser: headless Chromium driven by chromedp,
// in front of the whole binary (serve) and real redis-server processes.

import (
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

	"github.com/redis-proxy/redis-proxy/internal/events"
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
	within(s.t, s.ctx, 5*time.Second, "phone viewport", phoneView, chromedp.Sleep(300*time.Millisecond))
	s.shot(name, true)
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
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#servers tbody tr[data-addr=%s] button[data-target]`, strconv.Quote(target)))),
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
