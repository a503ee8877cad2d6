package proxy

import (
	"reflect"
	"slices"

	"github.com/redis-proxy/redis-proxy/proxy/internal/command"
)

// reloadable are the Config fields Reload applies to a running Proxy.
// Each is read where it is used, through cfg() or env, so a new value
// takes effect without a client being dropped:
//
//   - the passwords and the operator's user name: for every AUTH (and
//     HELLO AUTH, RESET) from then on; a client already authenticated stays
//     so, as in Redis after CONFIG SET requirepass;
//   - ReadFrom: for every command classified from then on (the routes are
//     republished with or without the replicas);
//   - the limits and timeouts: at their next check (MaxClients at the next
//     accept, MaxOutput at the next reply, IdleTimeout and WriteTimeout at
//     the next sweep or read, HoldTimeout and MaxHeld for the next command
//     held, MaxPinned at the next pin, DialTimeout at the next dial);
//   - MaxBulk: for clients that connect from then on (a client's request
//     parser keeps the limit it started with).
//
// The other fields shape what New built (event loops, pools, the backend
// credentials the pools and the replication manager share, the memory
// semaphore of MaxInflightMemory): they need a new Proxy.
var reloadable = []string{
	"ClientPassword", "OperatorPassword", "OperatorUser", "ReadFrom",
	"MaxClients", "MaxPinned", "MaxHeld", "MaxOutput", "MaxBulk",
	"IdleTimeout", "WriteTimeout", "HoldTimeout", "DialTimeout",
}

// Reloadable reports whether Reload applies the Config field named field
// (as spelled in Go: "ClientPassword") to a running Proxy.
func Reloadable(field string) bool { return slices.Contains(reloadable, field) }

// cfg is the configuration in force now. The Config it points to is never
// modified: Reload publishes a new one.
func (p *Proxy) cfg() *Config { return p.conf.Load() }

// setConfig publishes c, whose defaults are applied already (withDefaults
// is not idempotent: EventLoops 0 means none after it, 1 before), and the
// classifier's Env built from it.
func (p *Proxy) setConfig(cfg *Config) {
	p.dialer.timeout.Store(int64(cfg.DialTimeout))
	p.env.Store(&command.Env{
		Password:         cfg.ClientPassword,
		ReadReplicas:     cfg.ReadFrom == ReadFromReplicas,
		TunnelID:         p.tunnelID,
		OperatorUser:     cfg.OperatorUser,
		OperatorPassword: cfg.OperatorPassword,
		WriteAcks:        cfg.WriteAcks > 0,
	})
	p.conf.Store(cfg)
	p.readYourWrites.Store(cfg.ReadYourWrites && cfg.ReadFrom == ReadFromReplicas)
}

// Reload makes the reloadable fields of cfg (see Reloadable) the proxy's,
// without dropping a client, and returns the names of those whose value
// changed (secrets included: the name, never the value). It ignores the
// other fields: a caller that wants them changed must start a new Proxy
// (Reloadable tells which). cfg is validated whole first, as by New; an
// invalid cfg changes nothing and gets a *config.FieldError naming the
// field.
func (p *Proxy) Reload(cfg Config) (changed []string, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nc := cfg.withDefaults()
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.cfg()
	next := *cur
	nv, cv, xv := reflect.ValueOf(nc), reflect.ValueOf(*cur), reflect.ValueOf(&next).Elem()
	for _, f := range reloadable {
		if nv.FieldByName(f).Interface() != cv.FieldByName(f).Interface() {
			changed = append(changed, f)
			xv.FieldByName(f).Set(nv.FieldByName(f))
		}
	}
	if len(changed) == 0 {
		return nil, nil
	}
	p.setConfig(&next)
	if next.ReadFrom != cur.ReadFrom && !p.closed {
		// Reads go to replicas only when the routes list them: publish
		// the current topology with or without them.
		p.republishLocked(func(r *routes) {
			r.replicas = nil
			if next.ReadFrom == ReadFromReplicas {
				for _, a := range r.topo.Replicas {
					r.replicas = append(r.replicas, p.poolLocked(a))
				}
			}
		})
	}
	return changed, nil
}
