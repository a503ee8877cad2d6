package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis-proxy/redis-proxy/internal/events"
)

// consoleServer serves the console's routes as the admin API does: behind
// the guard (reads open) and the security headers.
func consoleServer(t *testing.T, con *console) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	con.routes(mux)
	guard := newAdminGuard(newAdminPolicy("", false), prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(secureHeaders(guard.wrap(mux)))
	t.Cleanup(srv.Close)
	return srv
}

func getEvents(t *testing.T, srv *httptest.Server, query string) (int, eventsReply) {
	t.Helper()
	resp, err := http.Get(srv.URL + "/events" + query)
	if err != nil {
		t.Fatalf("GET /events%s: %v", query, err)
	}
	defer resp.Body.Close()
	var r eventsReply
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatalf("GET /events%s: %v", query, err)
		}
	}
	return resp.StatusCode, r
}

func TestEventsEndpoint(t *testing.T) {
	ring := events.NewRing(3)
	stop := make(chan struct{})
	srv := consoleServer(t, &console{history: ring, stop: stop})

	// Empty: a list, not null.
	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"last_seq":0,"events":[]}` {
		t.Errorf("empty history: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}

	for i := 0; i < 4; i++ {
		ring.Add(events.Event{Kind: events.Down, Servers: []string{"a:1"}, Message: "m"})
	}
	seqs := func(r eventsReply) []uint64 {
		var s []uint64
		for _, e := range r.Events {
			s = append(s, e.Seq)
		}
		return s
	}
	for _, tc := range []struct {
		query string
		want  []uint64
	}{
		{"", []uint64{2, 3, 4}}, // the ring keeps 3, newest last
		{"?since=0", []uint64{2, 3, 4}},
		{"?since=3", []uint64{4}},
		{"?since=4", nil},
		{"?since=99", []uint64{2, 3, 4}}, // a seq of an earlier process: all are new
	} {
		code, r := getEvents(t, srv, tc.query)
		if code != 200 || !slices.Equal(seqs(r), tc.want) || r.LastSeq != 4 {
			t.Errorf("GET /events%s: %d last_seq %d events %v, want 200, 4, %v", tc.query, code, r.LastSeq, seqs(r), tc.want)
		}
	}
	for _, q := range []string{"?since=x", "?since=-1", "?wait=forever", "?wait=-1s", "?wait=2m"} {
		if code, _ := getEvents(t, srv, q); code != http.StatusBadRequest {
			t.Errorf("GET /events%s: %d, want 400", q, code)
		}
	}

	// A long poll returns as soon as an event is added...
	go func() {
		time.Sleep(100 * time.Millisecond)
		ring.Add(events.Event{Kind: events.Failover, Message: "new"})
	}()
	start := time.Now()
	code, r := getEvents(t, srv, "?since=4&wait=20s")
	if took := time.Since(start); code != 200 || !slices.Equal(seqs(r), []uint64{5}) || took > 5*time.Second {
		t.Errorf("long poll: %d %v after %v, want event 5 at once", code, seqs(r), took)
	}
	// ...and with none, after its wait, empty.
	start = time.Now()
	code, r = getEvents(t, srv, "?since=5&wait=200ms")
	if took := time.Since(start); code != 200 || len(r.Events) != 0 || r.LastSeq != 5 || took < 200*time.Millisecond {
		t.Errorf("long poll with nothing new: %d %v last %d after %v", code, seqs(r), r.LastSeq, took)
	}
	// Stopping the process ends a long poll.
	go func() {
		time.Sleep(100 * time.Millisecond)
		close(stop)
	}()
	start = time.Now()
	if code, _ := getEvents(t, srv, "?since=5&wait=30s"); code != 200 || time.Since(start) > 5*time.Second {
		t.Errorf("long poll at stop: %d after %v", code, time.Since(start))
	}
}

// TestStatusPageServed: the page, its script and style are served with a
// policy that lets the browser run only them, and the page itself holds no
// inline script or style and the script never writes HTML.
func TestStatusPageServed(t *testing.T) {
	srv := consoleServer(t, &console{history: events.NewRing(1)})
	get := func(path string) (*http.Response, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", `<script src="/ui/app.js" defer></script>`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "'use strict'"},
		{"/ui/app.css", "text/css; charset=utf-8", ":root"},
		{"/ui/icon.svg", "image/svg+xml", "<svg"},
	} {
		resp, body := get(tc.path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.ctype || !strings.Contains(body, tc.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.contains, strings.Contains(body, tc.contains))
		}
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %q", tc.path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: CSP %q allows something unsafe", tc.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: headers %v", tc.path, resp.Header)
		}
	}
	if resp, _ := get("/nothing"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing: %d, want 404 (only / is the page)", resp.StatusCode)
	}

	_, page := get("/")
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(m, `src="/ui/`) {
			t.Errorf("inline script in the page: %s", m)
		}
	}
	for _, bad := range []string{" style=", "<style", " onclick=", " onload=", "javascript:", "http://", "https://"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q: the CSP would block it, or it needs the internet", bad)
		}
	}
	_, script := get("/ui/app.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "http://", "https://"} {
		if strings.Contains(script, bad) {
			t.Errorf("app.js uses %q: server data must reach the page as text only, and nothing from the internet", bad)
		}
	}
}
