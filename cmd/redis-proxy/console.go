package main

// The operator's console on the admin address: the event history
// (GET /events), the status page (GET /, its script and style under /ui/)
// and the traffic figures /topology shows.

import (
	"embed"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/events"
)

// historySize is how many events GET /events keeps.
const historySize = 256

// maxEventsWait bounds GET /events?wait=.
const maxEventsWait = time.Minute

// console holds what the admin API serves beside the routing state.
type console struct {
	history *events.Ring
	traffic *trafficMeter // nil: no traffic figures
	// vipAddr is the VIP the pair manages ("" when none); peerSilence is
	// how long the other proxy may go without an advert while it holds the
	// VIP (its master-down interval).
	vipAddr     string
	peerSilence time.Duration
	// stop, closed when the process stops, ends long polls.
	stop <-chan struct{}
}

//go:embed ui
var uiFiles embed.FS

// The status page's shell: the page, its script and style, which carry no
// data. The guard lets them through even when reads are protected, so the
// page can load and ask for the token.
func isPageShell(path string) bool {
	return path == "/" || strings.HasPrefix(path, "/ui/")
}

// pageCSP allows the page its own script, style, icon and fetches, and
// nothing else: no inline script or style, no framing, no form posts.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// secureHeaders sets, on every admin response, what keeps a browser from
// running, sniffing or framing anything the admin API returns.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// routes adds the console's routes to mux.
func (c *console) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /events", c.serveEvents)
	page := func(name, ctype string) http.HandlerFunc {
		body, err := uiFiles.ReadFile("ui/" + name)
		if err != nil {
			panic(err) // embedded at build time
		}
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.Write(body)
		}
	}
	mux.Handle("GET /{$}", page("index.html", "text/html; charset=utf-8"))
	mux.Handle("GET /ui/app.js", page("app.js", "text/javascript; charset=utf-8"))
	mux.Handle("GET /ui/app.css", page("app.css", "text/css; charset=utf-8"))
	mux.Handle("GET /ui/icon.svg", page("icon.svg", "image/svg+xml"))
}

// membersStatus is the membership's part of /topology: what the page
// needs to offer adding and removing servers (GET /servers has the rest).
type membersStatus struct {
	Version   uint64 `json:"version"`
	MayChange bool   `json:"may_change"`        // this proxy takes changes (else: why_not)
	WhyNot    string `json:"why_not,omitempty"` // the API's reason for refusing them
}

// membersStatusOf is ms for /topology; nil when there is no membership.
func membersStatusOf(ms *members) *membersStatus {
	if ms == nil {
		return nil
	}
	m, _ := ms.get()
	st := &membersStatus{Version: m.Version, MayChange: true}
	if err := ms.mayChange(); err != nil {
		st.MayChange, st.WhyNot = false, err.Error()
	}
	return st
}

// eventsReply is GET /events.
type eventsReply struct {
	// LastSeq is the newest event's Seq (0: none yet). A LastSeq below the
	// since asked for means the proxy restarted: the events are all new.
	LastSeq uint64         `json:"last_seq"`
	Events  []events.Event `json:"events"` // oldest first
}

// serveEvents answers the events held, newest last: with ?since=N only
// those after N; with ?wait=D (at most a minute), if there are none yet,
// it waits up to D for one.
func (c *console) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeJSONError(w, http.StatusBadRequest, "since: want the seq of the last event seen, such as 42")
			return
		}
		since = n
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > maxEventsWait {
			writeJSONError(w, http.StatusBadRequest, "wait: want a duration from 0 to 1m, such as 25s")
			return
		}
		wait = d
	}
	evs, last, changed := c.history.Since(since)
	if len(evs) == 0 && wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-changed:
			evs, last, _ = c.history.Since(since)
		case <-t.C:
		case <-r.Context().Done():
		case <-c.stop:
		}
		t.Stop()
	}
	if evs == nil {
		evs = []events.Event{}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(eventsReply{LastSeq: last, Events: evs})
}
