// Package tlsfiles builds TLS configurations from PEM files and reads the
// files again when they change, so certificates can be rotated without a
// restart and without dropping a connection.
//
// A Store holds what it read last from its Files: a certificate with its
// key, and a CA pool. Reload reads the files again; when their contents
// differ from what it has and make a usable whole (a certificate that
// matches its key, a CA file holding certificates) the Store switches to
// them, and when they do not (a file half-written, a key that belongs to
// another certificate) it keeps what it had and says why. Watch calls
// Reload every interval until its context ends.
//
// The configurations a Store hands out never change; a reload makes new
// ones. Server returns one configuration for a listener whose
// GetConfigForClient picks the current one at each handshake: new clients
// get the new certificate, connected ones keep their session. Client
// returns the configuration of the moment, for a dialer to call at each
// new connection. Typical use:
//
//	st, err := tlsfiles.Load(tlsfiles.Files{Cert: "tls.crt", Key: "tls.key", CA: "ca.crt"}, log)
//	go st.Watch(ctx, 5*time.Second)
//	ln = tls.NewListener(ln, st.Server())     // clients must present a certificate of ca.crt
//	...
//	bt, err := tlsfiles.Load(tlsfiles.Files{CA: "redis-ca.crt"}, log)
//	dial := func() *tls.Config { return bt.Client() }
package tlsfiles

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Files names PEM files. Cert and Key go together: both or neither.
type Files struct {
	// Cert is a certificate chain, the leaf first; Key is its private key.
	// A server needs them; for a client they are optional (a client
	// certificate).
	Cert, Key string
	// CA holds the certificates that the other side's certificate must
	// chain to. For a server it makes client certificates required (and
	// verified against it); for a client, empty means the system's roots.
	CA string
	// ServerName is the name a client checks the server's certificate
	// against. If empty, the dialer's (the host of the address dialed).
	ServerName string
}

// FileError is a file a Store could not use.
type FileError struct {
	Which string // "Cert", "Key" or "CA": the field of Files
	Path  string
	Err   error
}

func (e *FileError) Error() string { return fmt.Sprintf("%s: %v", e.Path, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// Store holds the material read last from Files. Its methods are safe
// from any goroutine.
type Store struct {
	files Files
	log   *slog.Logger
	cur   atomic.Pointer[material]

	mu      sync.Mutex // serialises Reload
	lastBad [3][]byte  // contents last refused, so a bad file is logged once
}

// material is one reading of the files, and the configurations built
// from it.
type material struct {
	raw    [3][]byte // cert, key, CA as read
	cert   *tls.Certificate
	pool   *x509.CertPool
	server *tls.Config
	client *tls.Config
}

// Load reads f and returns a Store holding it. An error is a *FileError
// naming the file. log receives reloads (nil: none are logged).
func Load(f Files, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if (f.Cert == "") != (f.Key == "") {
		if f.Cert == "" {
			return nil, &FileError{Which: "Cert", Err: errors.New("a key file needs its certificate file")}
		}
		return nil, &FileError{Which: "Key", Path: "", Err: errors.New("a certificate file needs its key file")}
	}
	s := &Store{files: f, log: log}
	raw, err := s.read()
	if err != nil {
		return nil, err
	}
	m, err := s.build(raw)
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	s.warnValidity(m)
	return s, nil
}

// read reads the three files (those named).
func (s *Store) read() ([3][]byte, error) {
	var raw [3][]byte
	for i, f := range []struct{ which, path string }{{"Cert", s.files.Cert}, {"Key", s.files.Key}, {"CA", s.files.CA}} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return raw, &FileError{Which: f.which, Path: f.path, Err: err}
		}
		raw[i] = b
	}
	return raw, nil
}

// build parses raw into material.
func (s *Store) build(raw [3][]byte) (*material, error) {
	m := &material{raw: raw}
	if s.files.Cert != "" {
		c, err := tls.X509KeyPair(raw[0], raw[1])
		if err != nil {
			// Say which file is wrong: the certificate if it does not
			// parse alone, else the key.
			if _, cerr := parseCerts(raw[0]); cerr != nil {
				return nil, &FileError{Which: "Cert", Path: s.files.Cert, Err: cerr}
			}
			return nil, &FileError{Which: "Key", Path: s.files.Key, Err: err}
		}
		m.cert = &c
	}
	if s.files.CA != "" {
		certs, err := parseCerts(raw[2])
		if err != nil {
			return nil, &FileError{Which: "CA", Path: s.files.CA, Err: err}
		}
		m.pool = x509.NewCertPool()
		for _, c := range certs {
			m.pool.AddCert(c)
		}
	}
	m.server = &tls.Config{MinVersion: tls.VersionTLS12}
	if m.cert != nil {
		m.server.Certificates = []tls.Certificate{*m.cert}
	}
	if m.pool != nil {
		m.server.ClientCAs = m.pool
		m.server.ClientAuth = tls.RequireAndVerifyClientCert
	}
	m.client = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: m.pool, ServerName: s.files.ServerName}
	if m.cert != nil {
		m.client.Certificates = []tls.Certificate{*m.cert}
	}
	return m, nil
}

// parseCerts returns the certificates of a PEM file; it holds at least one.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate in the file")
	}
	return certs, nil
}

// Reload reads the files again and switches to them if their contents
// changed and make a usable whole; otherwise it keeps what it has. It
// reports whether it switched, and why it could not.
func (s *Store) Reload() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, err := s.read()
	old := s.cur.Load()
	if err == nil && sameRaw(raw, old.raw) {
		s.lastBad = [3][]byte{} // back to the good files: a bad set again is news
		return false, nil
	}
	var m *material
	if err == nil {
		m, err = s.build(raw)
	}
	if err != nil {
		if !sameRaw(raw, s.lastBad) {
			s.lastBad = raw
			s.log.Warn("TLS files not reloaded; keeping the previous ones", "err", err)
		}
		return false, err
	}
	s.lastBad = [3][]byte{}
	s.cur.Store(m)
	attrs := []any{"cert", s.files.Cert, "ca", s.files.CA}
	if l := m.leaf(); l != nil {
		attrs = append(attrs, "serial", l.SerialNumber.Text(16), "not_after", l.NotAfter.UTC())
	}
	s.log.Info("TLS files reloaded", attrs...)
	s.warnValidity(m)
	return true, nil
}

func sameRaw(a, b [3][]byte) bool {
	return bytes.Equal(a[0], b[0]) && bytes.Equal(a[1], b[1]) && bytes.Equal(a[2], b[2])
}

// warnValidity logs a certificate that is not valid now: peers will
// refuse it, but it is what the files hold.
func (s *Store) warnValidity(m *material) {
	l := m.leaf()
	if l == nil {
		return
	}
	if now := time.Now(); now.After(l.NotAfter) || now.Before(l.NotBefore) {
		s.log.Warn("TLS certificate is not valid now", "cert", s.files.Cert,
			"not_before", l.NotBefore.UTC(), "not_after", l.NotAfter.UTC())
	}
}

func (m *material) leaf() *x509.Certificate {
	if m.cert == nil {
		return nil
	}
	return m.cert.Leaf // set by tls.X509KeyPair
}

// Watch calls Reload every interval until ctx ends.
func (s *Store) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Reload() //nolint:errcheck // logged by Reload
		}
	}
}

// Server returns a configuration for a listener (tls.NewListener): each
// handshake uses the certificate read last and, with a CA file, requires
// a client certificate that chains to the CA read last. It needs Cert.
func (s *Store) Server() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load().server, nil
		},
	}
}

// Client returns the client configuration of the files read last: the CA
// pool (nil, the system's, without a CA file), the client certificate if
// there is one, and ServerName. Call it for each new connection; the
// caller must not modify it (Clone it to set a ServerName).
func (s *Store) Client() *tls.Config { return s.cur.Load().client }

// Leaf is the certificate read last (nil without Cert).
func (s *Store) Leaf() *x509.Certificate { return s.cur.Load().leaf() }
