package main

// REDIS_PROXY_CONFIG_FILE: the one place an operator changes a setting of a
// running proxy. A process's environment is fixed when it starts, so a
// reload (SIGHUP, POST /reload) could only ever re-read the files the
// environment names; the config file is such a file, holding the
// variables themselves. It is read when the proxy starts and at every
// reload, and its lines override the environment.
//
// Why this shape: the variables, their names, their validation and their
// error messages stay exactly those of the environment (one table, one
// --help), the file is what docker run --env-file and systemd's
// EnvironmentFile already read, and there is no second format to learn or
// to keep in step.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"
)

// configFileVar names the file of KEY=VALUE lines that override the
// environment (Config.ConfigFile).
const configFileVar = envPrefix + "_CONFIG_FILE"

// loadConfig reads the configuration: the environment, overridden by
// REDIS_PROXY_CONFIG_FILE's lines, and the secrets' files. It is what the
// proxy starts with and what each reload reads again.
func loadConfig() (Config, error) {
	var c Config
	err := withConfigFile(func() error {
		var err error
		c, err = loadEnvConfig()
		return err
	})
	return c, err
}

// maxConfigFile bounds the config file: a few hundred lines at most.
const maxConfigFile = 1 << 20

// envMu serialises the readers of the REDIS_PROXY_* environment: while
// withConfigFile runs, the process environment holds the file's values.
// The environment is the process's, so the lock is too.
var envMu sync.Mutex

// parseConfigFile reads KEY=VALUE lines: blank lines and lines whose first
// non-blank character is # are skipped; KEY is a REDIS_PROXY_* variable
// of the table (or a secret's _FILE) and may appear once; VALUE is the
// rest of the line after the first =, as written (no quotes are removed,
// nothing is expanded; a trailing \r is dropped). Errors name the line.
func parseConfigFile(path string, b []byte) (map[string]string, error) {
	vals := make(map[string]string)
	for i, line := range bytes.Split(b, []byte("\n")) {
		s := strings.TrimSuffix(string(line), "\r")
		t := strings.TrimSpace(s)
		if t == "" || t[0] == '#' {
			continue
		}
		where := fmt.Sprintf("%s=%q: line %d", configFileVar, path, i+1)
		k, v, ok := strings.Cut(strings.TrimLeft(s, " \t"), "=")
		k = strings.TrimSpace(k)
		switch {
		case !ok:
			return nil, &usageError{where + ": want KEY=VALUE"}
		case k == configFileVar:
			return nil, &usageError{where + ": " + configFileVar + " cannot name another file"}
		case !knownVar(k):
			return nil, &usageError{fmt.Sprintf("%s: %s is not a variable of redis-proxy (see redis-proxy --help)", where, k)}
		}
		if _, dup := vals[k]; dup {
			return nil, &usageError{fmt.Sprintf("%s: %s is set twice", where, k)}
		}
		vals[k] = v
	}
	return vals, nil
}

// knownVar reports whether name is a variable of the table, or the _FILE
// variable of a secret.
func knownVar(name string) bool {
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		v := envPrefix + "_" + envName(t.Field(i).Name)
		if name == v || (t.Field(i).Tag.Get("secret") == "true" && name == v+"_FILE") {
			return true
		}
	}
	return false
}

// secretSibling is, for a secret's variable, its _FILE variable, and for a
// _FILE variable, its secret's.
func secretSibling(name string) (string, bool) {
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("secret") != "true" {
			continue
		}
		v := envPrefix + "_" + envName(t.Field(i).Name)
		switch name {
		case v:
			return v + "_FILE", true
		case v + "_FILE":
			return v, true
		}
	}
	return "", false
}

// withConfigFile runs f with the variables of REDIS_PROXY_CONFIG_FILE (if
// set) in the environment, over those of the process, and puts the
// environment back as it was afterwards. A file that cannot be read or
// parsed is a usage error naming it, and f does not run.
func withConfigFile(f func() error) error {
	envMu.Lock()
	defer envMu.Unlock()
	path := os.Getenv(configFileVar)
	if path == "" {
		return f()
	}
	b, err := readSmallFile(path, maxConfigFile)
	if err != nil {
		return &usageError{fmt.Sprintf("%s=%q: cannot read the file: %v", configFileVar, path, err)}
	}
	vals, err := parseConfigFile(path, b)
	if err != nil {
		return err
	}
	type saved struct {
		v  string
		ok bool
	}
	before := make(map[string]saved, len(vals))
	save := func(k string) {
		if _, done := before[k]; !done {
			old, ok := os.LookupEnv(k)
			before[k] = saved{old, ok}
		}
	}
	for k := range vals {
		// A secret set in the file, as itself or as its _FILE, overrides
		// both forms in the environment.
		if sib, ok := secretSibling(k); ok {
			if _, inFile := vals[sib]; !inFile {
				save(sib)
				os.Unsetenv(sib)
			}
		}
	}
	for k, v := range vals {
		save(k)
		os.Setenv(k, v)
	}
	defer func() {
		for k, s := range before {
			if s.ok {
				os.Setenv(k, s.v)
			} else {
				os.Unsetenv(k)
			}
		}
	}()
	return f()
}

// loadAdminSettings is what the admin subcommands (healthcheck, status,
// switchover, reload) read: loadAdminEnv, with REDIS_PROXY_CONFIG_FILE's
// lines over the environment as for the proxy itself. A config file that
// cannot be read or parsed is reported on stderr, and the environment
// alone is used: a health check must not fail a proxy that runs fine
// because of a file only its next reload will read (and refuse).
func loadAdminSettings(stderr io.Writer) (adminEnv, error) {
	var a adminEnv
	var aerr error
	err := withConfigFile(func() error {
		a, aerr = loadAdminEnv()
		return nil
	})
	if err != nil {
		fmt.Fprintf(stderr, "redis-proxy: warning: %v (using the environment alone)\n", err)
		envMu.Lock()
		defer envMu.Unlock()
		return loadAdminEnv()
	}
	return a, aerr
}
