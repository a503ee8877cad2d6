package command

// Names for the tests' output (golden files, failure messages).

var kindNames = map[Kind]string{
	Forward: "forward", Read: "read", ReadCursor: "read-cursor", Local: "local",
	Pin: "pin", Open: "open", Close: "close", Renew: "renew", Ask: "ask",
}

var opNames = map[Op]string{
	OpNone: "none", OpMulti: "multi", OpExec: "exec", OpDiscard: "discard",
	OpWatch: "watch", OpUnwatch: "unwatch", OpSelect: "select", OpAuthUser: "auth-user",
	OpExecAbort: "exec-abort", OpTunnelLater: "tunnel-later", OpAuthUserRESP3: "auth-user-resp3", OpKill: "kill",
}

var connNames = map[Conn]string{Shared: "shared", Pinned: "pinned", Tunnel: "tunnel"}

var scriptNames = map[Script]string{ScriptNone: "none", ScriptNote: "note", ScriptForget: "forget"}

var specialNames = map[Special]string{
	None: "none", Auth: "auth", Hello: "hello", Quit: "quit", Reset: "reset",
	Select: "select", Multi: "multi", Watch: "watch", Exec: "exec", Discard: "discard",
	Unwatch: "unwatch", Subscribe: "subscribe", Unsubscribe: "unsubscribe",
	Replication: "replication", Shutdown: "shutdown", ConfigSet: "config-set",
	ScriptLoad: "script-load", ScriptFlush: "script-flush", EvalshaRO: "evalsha-ro",
	Wait: "wait", XRead: "xread", Scan: "scan", ClientID: "client-id",
	ClientUnblock: "client-unblock", ClientGetName: "client-getname",
	ClientSetName: "client-setname", ClientReply: "client-reply",
	ClientTracking: "client-tracking", ClientNoEvict: "client-no-evict",
	ClientOther: "client-other", ClientTable: "client-table", ClientGetRedir: "client-getredir", InfoCmd: "info", ConfigGet: "config-get", ACLAdmin: "acl-admin",
	ClientPause: "client-pause", Debug: "debug", Module: "module", KillScript: "kill-script",
}

var filterNames = map[Filter]string{FilterNone: "none", FilterSecrets: "secrets", FilterClients: "clients"}

func lookupName[K comparable](m map[K]string, name string) (K, bool) {
	for k, v := range m {
		if v == name {
			return k, true
		}
	}
	var zero K
	return zero, false
}
