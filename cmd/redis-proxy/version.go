package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version and revision are set at link time by `make build` (and so the
// appliance's image, built from its binary):
//
//	-ldflags '-X main.version=v1.2.0 -X main.revision=<git commit>'
//
// Unset, the revision comes from the build information the Go toolchain
// records (vcs.revision, when built in a git checkout with VCS stamping),
// and whatever is still unknown reads "dev".
var version, revision string

// buildVersion returns the version and the revision of this binary,
// "dev" for what is not known.
func buildVersion() (ver, rev string) {
	ver, rev = version, revision
	if rev == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					rev = s.Value
				}
			}
		}
	}
	if ver == "" {
		ver = "dev"
	}
	if rev == "" {
		rev = "dev"
	}
	return ver, rev
}

// printVersion is `redis-proxy version`.
func printVersion(w io.Writer) {
	ver, rev := buildVersion()
	fmt.Fprintf(w, "redis-proxy %s (revision %s, %s)\n", ver, rev, runtime.Version())
}

// registerBuildInfo exports redis_proxy_build_info{version,revision} = 1.
func registerBuildInfo(reg prometheus.Registerer) {
	ver, rev := buildVersion()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "redis_proxy_build_info",
		Help:        "1, labelled with the version and the git revision of this binary (dev when unknown).",
		ConstLabels: prometheus.Labels{"version": ver, "revision": rev},
	}, func() float64 { return 1 }))
}
