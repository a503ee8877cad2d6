package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"time"

	"github.com/redis-proxy/redis-proxy/internal/tlsfiles"
)

// listenNone as REDIS_PROXY_LISTEN turns the plain client listener off (an
// empty variable would mean the default, :6379).
const listenNone = "none"

// validateTLS checks the TLS variables and the rules between them and the
// listeners. The files are read by loadTLS, when the proxy starts.
func (c Config) validateTLS() error {
	if c.Listen == listenNone && c.TLSListen == "" {
		return &usageError{fmt.Sprintf("%s_LISTEN=%q but %s_TLS_LISTEN is empty: want a host:port for one of them (clients need a listener)",
			envPrefix, c.Listen, envPrefix)}
	}
	if c.TLSListen != "" {
		if checkHostPort(c.TLSListen) != nil {
			return badVar("TLSListen", c.TLSListen, accepts("TLSListen"))
		}
		if _, port, _ := net.SplitHostPort(c.TLSListen); c.TLSListen == c.Listen && port != "0" {
			return &usageError{fmt.Sprintf("%s_TLS_LISTEN=%q is also %s_LISTEN: want another address (or %s_LISTEN=%s)",
				envPrefix, c.TLSListen, envPrefix, envPrefix, listenNone)}
		}
		for _, f := range []string{"TLSCertFile", "TLSKeyFile"} {
			if fieldString(c, f) == "" {
				return &usageError{fmt.Sprintf("%s_%s is required with %s_TLS_LISTEN: want %s", envPrefix, envName(f), envPrefix, accepts(f))}
			}
		}
	} else {
		for _, f := range []string{"TLSCertFile", "TLSKeyFile", "TLSCAFile"} {
			if fieldString(c, f) != "" {
				return &usageError{fmt.Sprintf("%s_%s is set but %s_TLS_LISTEN is empty: the file is for the TLS listener (want both or neither)",
					envPrefix, envName(f), envPrefix)}
			}
		}
	}
	backend := []string{"BackendTLSCAFile", "BackendTLSServerName", "BackendTLSCertFile", "BackendTLSKeyFile"}
	for _, f := range backend {
		if !c.BackendTLS && fieldString(c, f) != "" {
			return &usageError{fmt.Sprintf("%s_%s is set but %s_BACKEND_TLS is false: want %s_BACKEND_TLS=true, or no %s_%s",
				envPrefix, envName(f), envPrefix, envPrefix, envPrefix, envName(f))}
		}
	}
	if (c.BackendTLSCertFile == "") != (c.BackendTLSKeyFile == "") {
		set, unset := "BackendTLSCertFile", "BackendTLSKeyFile"
		if c.BackendTLSCertFile == "" {
			set, unset = unset, set
		}
		return &usageError{fmt.Sprintf("%s_%s is set but %s_%s is empty: a client certificate needs its key (want both or neither)",
			envPrefix, envName(set), envPrefix, envName(unset))}
	}
	if c.TLSReloadInterval <= 0 {
		return badVar("TLSReloadInterval", c.TLSReloadInterval.String(), accepts("TLSReloadInterval"))
	}
	return nil
}

// fieldString is the value of a string field of c.
func fieldString(c Config, field string) string {
	return reflect.ValueOf(c).FieldByName(field).String()
}

// tlsSetup is the TLS material of a running proxy: the files of the
// client listener and of the connections to Redis, each nil when unused.
type tlsSetup struct {
	clients *tlsfiles.Store
	backend *tlsfiles.Store
}

// loadTLS reads the TLS files. An unusable file is a usage error naming
// its variable.
func (c Config) loadTLS(log *slog.Logger) (tlsSetup, error) {
	var ts tlsSetup
	load := func(f tlsfiles.Files, vars map[string]string) (*tlsfiles.Store, error) {
		st, err := tlsfiles.Load(f, log.With("component", "tls"))
		var fe *tlsfiles.FileError
		if errors.As(err, &fe) {
			return nil, &usageError{fmt.Sprintf("%s_%s=%q: %v (want %s)", envPrefix, envName(vars[fe.Which]), fe.Path, fe.Err, accepts(vars[fe.Which]))}
		}
		return st, err
	}
	var err error
	if c.TLSListen != "" {
		ts.clients, err = load(tlsfiles.Files{Cert: c.TLSCertFile, Key: c.TLSKeyFile, CA: c.TLSCAFile},
			map[string]string{"Cert": "TLSCertFile", "Key": "TLSKeyFile", "CA": "TLSCAFile"})
		if err != nil {
			return ts, err
		}
	}
	if c.BackendTLS {
		ts.backend, err = load(tlsfiles.Files{Cert: c.BackendTLSCertFile, Key: c.BackendTLSKeyFile, CA: c.BackendTLSCAFile, ServerName: c.BackendTLSServerName},
			map[string]string{"Cert": "BackendTLSCertFile", "Key": "BackendTLSKeyFile", "CA": "BackendTLSCAFile"})
	}
	return ts, err
}

// backendTLS is proxy.Config.BackendTLS and replication.Config.TLS: nil
// without backend TLS.
func (ts tlsSetup) backendTLS() func() *tls.Config {
	if ts.backend == nil {
		return nil
	}
	return ts.backend.Client
}

// watch re-reads the files every interval until ctx ends.
func (ts tlsSetup) watch(ctx context.Context, interval time.Duration) {
	for _, st := range []*tlsfiles.Store{ts.clients, ts.backend} {
		if st != nil {
			go st.Watch(ctx, interval)
		}
	}
}

// listen opens the client listeners: the plain one unless LISTEN is none,
// and the TLS one if TLS_LISTEN is set.
func (c Config) listen(ts tlsSetup) ([]net.Listener, error) {
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	if c.Listen != listenNone {
		ln, err := net.Listen("tcp", c.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", c.Listen, err)
		}
		lns = append(lns, ln)
	}
	if c.TLSListen != "" {
		ln, err := net.Listen("tcp", c.TLSListen)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("TLS listen on %s: %w", c.TLSListen, err)
		}
		lns = append(lns, tls.NewListener(ln, ts.clients.Server()))
	}
	return lns, nil
}

// listenAddrs are the addresses lns listen on, a TLS one marked so.
func listenAddrs(lns []net.Listener) []string {
	var addrs []string
	for _, ln := range lns {
		a := ln.Addr().String()
		if _, plain := ln.(*net.TCPListener); !plain {
			a += " (TLS)"
		}
		addrs = append(addrs, a)
	}
	return addrs
}
