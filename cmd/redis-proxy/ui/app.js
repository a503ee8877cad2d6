// redis-proxy status page: polls GET /topology every second and long-polls
// GET /events, and renders both. Server data only ever reaches the page as
// text (textContent, attribute values): never as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'redis-proxy-admin-token';
  const TOPOLOGY_EVERY = 1000; // ms
  const STALE_AFTER = 3500; // ms without an answer: the page says so
  const EVENTS_SHOWN = 80;
  const EVENTS_KEPT = 256;

  const $ = (id) => document.getElementById(id);

  const state = {
    topo: null,
    events: [], // oldest first
    lastSeq: 0,
    lastOK: 0,
    locked: false,
    topoBusy: false,
    topoAgain: false,
    freshSeq: 0, // events above this seq flash once
    skew: 0, // server clock minus browser clock, ms
  };

  // ---- token ---------------------------------------------------------------

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; }
  }

  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the token lasts until reload */ }
    memoryToken = t;
    $('token-button').dataset.set = t ? 'yes' : 'no'; // the style marks it
  }
  let memoryToken = '';

  function authHeaders() {
    const t = token() || memoryToken;
    return t ? { Authorization: 'Bearer ' + t } : {};
  }

  // ---- helpers -------------------------------------------------------------

  // el builds an element; children are nodes or strings (as text).
  function el(tag, opts, ...children) {
    const e = document.createElement(tag);
    if (opts) {
      if (opts.cls) e.className = opts.cls;
      if (opts.text !== undefined) e.textContent = String(opts.text);
      if (opts.title) e.title = String(opts.title);
      if (opts.data) for (const [k, v] of Object.entries(opts.data)) e.dataset[k] = String(v);
      if (opts.label) e.dataset.label = opts.label;
    }
    for (const c of children) {
      if (c === null || c === undefined || c === '') continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  const badge = (text, cls) => el('span', { cls: 'badge ' + (cls || ''), text });
  const sub = (text) => el('span', { cls: 'sub', text });
  const nf = new Intl.NumberFormat();
  const fmtNum = (n) => nf.format(n);

  function fmtDur(ns) {
    const ms = ns / 1e6;
    if (ms < 1) return (ns / 1e3).toFixed(0) + ' µs';
    if (ms < 10) return ms.toFixed(1) + ' ms';
    if (ms < 1000) return ms.toFixed(0) + ' ms';
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + Math.round(s - m * 60) + ' s';
    const h = Math.floor(m / 60);
    return h + ' h ' + (m - h * 60) + ' min';
  }

  function fmtAgo(iso) {
    const t = Date.parse(iso);
    if (!t || t < 0) return 'never';
    const ms = Math.max(0, Date.now() + state.skew - t);
    if (ms < 1500) return 'just now';
    return fmtDur(ms * 1e6).replace(/\.\d+ s$/, ' s') + ' ago';
  }

  function fmtBytes(n) {
    if (n < 1024) return n + ' B';
    const units = ['KiB', 'MiB', 'GiB', 'TiB'];
    let v = n / 1024;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return v.toFixed(v < 10 ? 1 : 0) + ' ' + units[i];
  }

  function fmtRate(r) {
    if (r >= 100) return fmtNum(Math.round(r));
    if (r >= 10) return r.toFixed(1);
    return r.toFixed(r > 0 ? 2 : 0);
  }

  function fmtClock(iso) {
    const d = new Date(iso);
    return d.toLocaleTimeString([], { hour12: false });
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function errorOf(resp) {
    try {
      const body = await resp.json();
      if (body && body.error) return String(body.error);
    } catch (e) { /* not JSON */ }
    return resp.status + ' ' + resp.statusText;
  }

  // ---- fetching --------------------------------------------------------------

  async function refreshTopology() {
    if (state.topoBusy) { state.topoAgain = true; return; }
    state.topoBusy = true;
    try {
      do {
        state.topoAgain = false;
        const resp = await fetch('/topology', { headers: authHeaders(), cache: 'no-store' });
        if (resp.status === 401 || resp.status === 403) {
          lock(await errorOf(resp));
          return;
        }
        if (!resp.ok) throw new Error(await errorOf(resp));
        const topo = await resp.json();
        unlock();
        state.topo = topo;
        state.lastOK = Date.now();
        if (topo.now) state.skew = Date.parse(topo.now) - Date.now();
        render();
      } while (state.topoAgain);
    } catch (e) {
      markLive();
    } finally {
      state.topoBusy = false;
    }
  }

  async function topologyLoop() {
    for (;;) {
      await refreshTopology();
      await sleep(TOPOLOGY_EVERY);
    }
  }

  async function eventsLoop() {
    for (;;) {
      if (state.locked) { await sleep(1000); continue; }
      try {
        const resp = await fetch('/events?since=' + state.lastSeq + '&wait=25s', { headers: authHeaders(), cache: 'no-store' });
        if (resp.status === 401 || resp.status === 403) {
          lock(await errorOf(resp));
          continue;
        }
        if (!resp.ok) throw new Error(await errorOf(resp));
        const body = await resp.json();
        const evs = Array.isArray(body.events) ? body.events : [];
        if (body.last_seq < state.lastSeq) {
          state.events = []; // the proxy restarted: these are all new
        }
        if (state.lastSeq === 0 && state.events.length === 0) {
          state.freshSeq = body.last_seq; // the history as found: no flashing
        }
        for (const e of evs) {
          if (!state.events.length || e.seq > state.events[state.events.length - 1].seq) state.events.push(e);
        }
        if (state.events.length > EVENTS_KEPT) state.events.splice(0, state.events.length - EVENTS_KEPT);
        state.lastSeq = body.last_seq;
        if (evs.length) {
          renderEvents();
          refreshTopology(); // an event is a change: show it now, not at the next tick
        }
      } catch (e) {
        await sleep(2000);
      }
    }
  }

  // ---- locked (reads need the token) ----------------------------------------

  function lock(msg) {
    state.locked = true;
    $('content').hidden = true;
    $('locked').hidden = false;
    const err = $('locked-error');
    if (token() || memoryToken) {
      err.textContent = msg;
      err.hidden = false;
    } else {
      err.hidden = true;
    }
    markLive();
  }

  function unlock() {
    if (!state.locked && !$('content').hidden) return;
    state.locked = false;
    $('locked').hidden = true;
    $('content').hidden = false;
  }

  // ---- rendering -------------------------------------------------------------

  function markLive() {
    const live = $('live');
    const text = $('live-text');
    if (state.locked) {
      live.dataset.state = 'stale';
      text.textContent = 'token needed';
      return;
    }
    if (!state.lastOK) {
      live.dataset.state = 'connecting';
      text.textContent = 'connecting…';
      return;
    }
    const age = Date.now() - state.lastOK;
    if (age > STALE_AFTER) {
      live.dataset.state = 'stale';
      text.textContent = 'no answer for ' + Math.round(age / 1000) + ' s';
    } else {
      live.dataset.state = 'live';
      text.textContent = 'live · ' + new Date(state.lastOK).toLocaleTimeString([], { hour12: false });
    }
  }

  function render() {
    const t = state.topo;
    if (!t) return;
    renderBanner(t);
    renderTiles(t);
    renderServers(t);
    renderPair(t);
    markLive();
  }

  function serversOf(t) {
    return (t.replication && t.replication.servers) || [];
  }

  function renderBanner(t) {
    const rep = t.replication || {};
    const master = t.routing.master;
    const servers = serversOf(t);
    const down = servers.filter(isDown);
    const joining = servers.filter((s) => s.joining && !isDown(s));
    const replicas = t.routing.replicas || [];
    let st;
    let title;
    let detail;
    if (rep.promoting) {
      st = 'bad';
      title = 'Failover in progress: promoting ' + rep.promoting;
      detail = 'Client commands are held until the new master is confirmed.';
    } else if (!master) {
      st = 'bad';
      title = 'No master: client commands are held';
      detail = rep.waiting ? 'Why: ' + rep.waiting + '.' : 'Waiting for the servers to answer.';
    } else {
      const unlinked = servers.filter((s) => s.up && s.addr !== master && !s.discovered && !s.joining && !replicas.includes(s.addr));
      const parts = [];
      if (down.length) parts.push(down.length + ' of ' + servers.length + ' servers down (' + down.map((s) => s.addr).join(', ') + ')');
      if (unlinked.length) parts.push('not replicating: ' + unlinked.map((s) => s.addr).join(', '));
      const base = 'Master ' + master + ', epoch ' + t.routing.epoch + ', ' +
        replicas.length + (replicas.length === 1 ? ' replica' : ' replicas') + ' in sync.' +
        (joining.length ? ' Joining (catching up, no reads yet): ' + joining.map((s) => s.addr).join(', ') + '.' : '');
      if (parts.length) {
        st = 'warn';
        title = 'Serving, degraded: ' + parts.join('; ');
        detail = base;
      } else {
        st = 'ok';
        title = 'Healthy: every server up, writes go to ' + master;
        detail = base;
      }
    }
    if (rep.authority === false) {
      detail += ' This proxy only observes: the proxy holding the VIP decides for replication.';
    }
    const b = $('banner');
    b.dataset.state = st;
    $('banner-title').textContent = title;
    $('banner-detail').textContent = detail;
    document.title = (st === 'ok' ? '✓ ' : st === 'warn' ? '! ' : '✗ ') + (master || 'no master') + ' · redis-proxy';
  }

  function setTile(id, value, subText, tileState) {
    $(id).textContent = value;
    $(id + '-sub').textContent = subText || '';
    $(id).parentElement.dataset.state = tileState || '';
  }

  function renderTiles(t) {
    const rep = t.replication || {};
    const lf = rep.last_failover;
    let masterSub = '';
    if (lf) masterSub = lf.kind + ' ' + fmtDur(lf.duration_ns) + ' · ' + fmtAgo(lf.completed);
    setTile('t-master', t.routing.master || 'none', masterSub, t.routing.master ? '' : 'bad');
    const fo = rep.failovers || 0;
    let epochSub = fo === 0 ? 'no change of master' : fo + (fo === 1 ? ' change of master' : ' changes of master');
    if (rep.lost_bytes > 0) epochSub += ' · ' + fmtBytes(rep.lost_bytes) + ' lost';
    setTile('t-epoch', String(t.routing.epoch), epochSub, rep.lost_bytes > 0 ? 'warn' : '');
    const tr = t.traffic;
    if (!tr) {
      for (const id of ['t-clients', 't-cps', 't-latency', 't-held']) setTile(id, '–', '');
      return;
    }
    setTile('t-clients', fmtNum(tr.clients), tr.pinned ? fmtNum(tr.pinned) + ' pinned' : 'connected now');
    if (tr.window_ns > 0) {
      setTile('t-cps', fmtRate(tr.commands_per_sec), fmtNum(tr.commands) + ' since start');
      setTile('t-latency', tr.latency_mean_ns > 0 ? fmtDur(tr.latency_mean_ns) : '–',
        tr.latency_p99_ns > 0 ? 'mean · p99 ' + fmtDur(tr.latency_p99_ns) : 'idle');
    } else {
      setTile('t-cps', '…', fmtNum(tr.commands) + ' since start');
      setTile('t-latency', '…', 'measuring');
    }
    setTile('t-held', fmtNum(tr.held), 'clients waiting for a master' + (tr.hold_timeouts ? ' · ' + fmtNum(tr.hold_timeouts) + ' timed out' : ''),
      tr.held > 0 ? 'warn' : '');
  }

  // eligible: a switchover may go to this server (what the proxy will
  // accept: a configured replica of the master, linked, priority above 0).
  function eligible(t, s) {
    return !s.discovered && s.up && s.priority !== 0 && (t.routing.replicas || []).includes(s.addr);
  }

  // canSwitch: this proxy may switch over now (it decides, there is a
  // master, no failover is under way).
  function canSwitch(t) {
    const rep = repOf(t);
    return rep.authority !== false && !!t.routing.master && !rep.promoting;
  }

  function renderServers(t) {
    const rep = t.replication || {};
    const master = t.routing.master;
    const change = canChangeServers(t);
    const rows = serversOf(t).map((s) => {
      const isMaster = s.addr === master;
      const pending = isPending(s);
      // A down server's role is only what it last said.
      let role = s.role || 'unknown';
      if (isMaster) role = 'master';
      else if (pending) role = 'unknown';
      else if (!s.up) role = 'down';
      const tr = el('tr', { data: {
        addr: s.addr, role, up: s.up ? 'yes' : pending ? 'pending' : 'no', joining: s.joining ? 'yes' : 'no',
      } });

      const name = el('td', { cls: 'first', label: 'Server' }, el('span', { cls: 'addr', text: s.addr }));
      if (pending) name.append(sub('added: waiting for its first check'));
      else if (!s.up) name.append(sub((s.joining ? 'added; ' : '') + (s.last_ok ? 'last answered ' + fmtAgo(s.last_ok) : 'never answered')));
      else if (s.joining) name.append(sub('added: catching up with the master, no reads yet'));
      else if (s.discovered) name.append(sub('discovered, not configured'));
      else if (isMaster) name.append(sub('routed: takes the writes'));
      else if ((t.routing.replicas || []).includes(s.addr)) name.append(sub('routed replica'));

      let roleBadge;
      if (isMaster) roleBadge = badge('master', 'master');
      else if (!s.up) roleBadge = badge(s.role ? 'was ' + s.role : 'unknown', '');
      else if (s.role === 'master' && s.joining) roleBadge = badge('master, to be made a replica', '');
      else if (s.role === 'master') roleBadge = badge('master, not routed', 'warn');
      else if (s.role === 'replica') roleBadge = badge('replica', 'replica');
      else roleBadge = badge('unknown', '');
      const roleTd = el('td', { label: 'Role' }, roleBadge);

      const stateTd = el('td', { label: 'State' });
      if (rep.promoting === s.addr) stateTd.append(badge('promoting', 'warn'));
      else if (s.joining && (s.up || pending)) stateTd.append(badge('joining', 'join'));
      else if (s.up) stateTd.append(badge('up', 'ok'));
      else stateTd.append(badge('down', 'bad'));

      const hasInfo = !!s.role;
      const offsetTd = el('td', { cls: 'num', label: 'Offset', text: hasInfo ? fmtNum(s.offset) : '–' });
      if (!s.up) {
        offsetTd.classList.add('muted');
        offsetTd.title = 'as last seen';
      }

      let lag = '–';
      if (s.up && s.role === 'replica' && s.link_up && s.master_addr && (s.master_addr === master || s.lag_bytes > 0)) {
        lag = s.lag_bytes > 0 ? fmtBytes(s.lag_bytes) : 'in sync';
      }
      const lagTd = el('td', { cls: 'num', label: 'Lag', text: lag });
      if (s.lag_bytes > 0 && lag !== '–') lagTd.classList.add('warn-text');

      const linkTd = el('td', { label: 'Link' });
      if (s.up && s.role === 'replica') {
        // A joining replica's link is down until its first full copy arrives.
        if (s.link_up) linkTd.append(badge('up', 'ok'));
        else linkTd.append(s.joining ? badge('syncing', 'warn') : badge('down', 'bad'));
        if (s.master_addr && s.master_addr !== master) linkTd.append(sub('follows ' + s.master_addr));
      } else {
        linkTd.textContent = '–';
      }

      let prio = '–';
      if (hasInfo) prio = s.priority === 0 ? '0 · never promoted' : String(s.priority || 0);
      const prioTd = el('td', { cls: 'num', label: 'Priority', text: prio });

      // "check ADDR: " starts every failed check: the row says which server.
      const err = (s.error || '').replace('check ' + s.addr + ': ', '');
      const errTd = el('td', { cls: 'err', label: 'Last error', text: err, title: s.error || '' });
      if (!s.error) errTd.classList.add('empty-cell');

      const actTd = el('td', { cls: 'act' });
      if (eligible(t, s) && canSwitch(t)) {
        const b = el('button', { cls: 'ghost small', text: 'Make master' });
        b.type = 'button';
        b.dataset.target = s.addr;
        b.addEventListener('click', () => openSwitchover(s.addr));
        actTd.append(b);
      }
      // The master is not offered: the proxy refuses to remove it (switch
      // over first). A discovered server is not in the list to remove.
      if (!isMaster && !s.discovered) {
        const b = el('button', { cls: 'ghost small remove', text: 'Remove' });
        b.type = 'button';
        b.dataset.remove = s.addr;
        b.disabled = !change;
        b.title = change ? 'Stop routing to ' + s.addr + ' and checking it' : membersWhyNot(t);
        b.addEventListener('click', () => openRemove(s.addr));
        actTd.append(b);
      }
      if (!actTd.childElementCount) actTd.classList.add('empty-cell');

      tr.append(name, roleTd, stateTd, offsetTd, lagTd, linkTd, prioTd, errTd, actTd);
      return tr;
    });
    $('servers').tBodies[0].replaceChildren(...rows);
    const btn = $('switchover');
    const can = canSwitch(t) && serversOf(t).some((s) => eligible(t, s));
    btn.disabled = !can;
    if (rep.authority === false) btn.title = 'Only the proxy that holds the VIP switches over: open its page';
    else btn.title = can ? 'Move the master role to a replica, without losing writes' : 'No linked replica to switch over to';
    $('switchover-note').hidden = rep.authority !== false;

    const add = $('add-server');
    add.disabled = !change;
    add.title = change ? 'Add a Redis server: it becomes a replica of the master' : membersWhyNot(t);
    const note = $('members-note');
    note.hidden = change;
    const why = membersWhyNot(t);
    note.textContent = change ? '' : why.charAt(0).toUpperCase() + why.slice(1) + '.';
  }

  // isPending: added, and its first check has not come back yet (neither
  // up nor down so far).
  const isPending = (s) => s.joining && !s.up && !s.error && !s.last_ok;
  const isDown = (s) => !s.up && !isPending(s);

  // canChangeServers: this proxy takes additions and removals (it has
  // authority and a state directory); /topology says, with the reason.
  function canChangeServers(t) {
    if (t.members) return !!t.members.may_change;
    return repOf(t).authority !== false;
  }

  function membersWhyNot(t) {
    if (t.members && t.members.why_not) return t.members.why_not;
    return 'only the proxy holding the VIP adds and removes servers';
  }

  function proxyBox(title, name, holds, rows, roleText, roleCls) {
    const dl = el('dl');
    for (const [k, v] of rows) {
      dl.append(el('dt', { text: k }), el('dd', null, v));
    }
    return el('div', { cls: 'proxy', data: { vip: holds ? 'yes' : 'no' } },
      el('div', { cls: 'proxy-head' },
        el('div', null, el('div', { cls: 'proxy-name', text: title }), name ? sub(name) : null),
        badge(roleText, roleCls)),
      dl);
  }

  function roleClass(role) {
    switch (role) {
      case 'MASTER': return 'master';
      case 'BACKUP': return 'replica';
      case 'FAULT': return 'bad';
      default: return 'warn';
    }
  }

  function renderPair(t) {
    const box = $('pair');
    const p = t.pair;
    if (!p) {
      $('pair-summary').textContent = 'standalone';
      box.replaceChildren(el('p', { cls: 'pair-note', text: 'This proxy runs alone (no REDIS_PROXY_PEERS): it always decides for replication, and no virtual IP is managed.' }));
      return;
    }
    const peer = p.peer;
    const peerHolds = !!peer && peer.hearing && peer.role === 'MASTER' && peer.priority > 0;
    let holder = 'nobody';
    if (p.role === 'MASTER') holder = 'this proxy';
    else if (peerHolds) holder = 'the other proxy';
    $('pair-summary').textContent = (p.vip ? p.vip + ' held by ' : 'elected: ') + holder;

    const yes = (b) => (b ? 'yes' : 'no');
    const mine = proxyBox('This proxy', '', p.role === 'MASTER', [
      p.vip ? ['Holds the VIP', yes(p.holds_vip)] : ['VIP', 'none configured: the pair elects without one'],
      ['Decides', repOf(t).authority ? 'yes: it may change replication' : 'no: it observes'],
      ['Priority', String(p.priority)],
      ['Reaches Redis', yes(p.healthy)],
      ['Adverts', fmtNum(p.adverts_sent) + ' sent, ' + fmtNum(p.adverts_received) + ' heard'],
    ], p.role, roleClass(p.role));

    const quiet = 'a backup sends none: only the VIP holder advertises';
    let other;
    if (!peer) {
      other = proxyBox('Other proxy', '', false, [
        ['Last advert', p.role === 'MASTER' ? 'never heard (' + quiet + ')' : 'never heard'],
      ], 'SILENT', '');
    } else {
      let heard = fmtAgo(peer.heard_at);
      if (!peer.hearing) heard += p.role === 'MASTER' ? ' (' + quiet + ')' : ' (silent)';
      const advertised = peer.role + (peer.priority === 0 ? ', giving the VIP up' : '');
      other = proxyBox('Other proxy', peer.addr, peerHolds, [
        ['Last advert', heard],
        ['It said', advertised],
        ['Priority', String(peer.priority)],
        ['Reaches Redis', yes(peer.healthy)],
        ['Its master', (peer.master || 'none') + ' · epoch ' + peer.epoch],
      ], peer.hearing ? peer.role : 'SILENT', peer.hearing ? roleClass(peer.role) : '');
    }
    box.replaceChildren(mine, other);
  }

  const repOf = (t) => t.replication || {};

  function renderEvents() {
    const list = $('events');
    const shown = state.events.slice(-EVENTS_SHOWN).reverse();
    if (!shown.length) {
      list.replaceChildren(el('li', { cls: 'empty', text: 'No events yet.' }));
    } else {
      list.replaceChildren(...shown.map((e) => {
        const msg = el('span', { cls: 'event-msg', text: e.message });
        if (e.duration_ns > 0) msg.append(el('span', { cls: 'event-dur', text: fmtDur(e.duration_ns) }));
        const li = el('li', { cls: 'event', data: { kind: e.kind, level: e.level, seq: e.seq } },
          el('span', { cls: 'event-time', text: fmtClock(e.time), title: e.time + ' · epoch ' + e.epoch }),
          el('span', { cls: 'event-kind' }, badge(e.kind.replace(/-/g, ' '))),
          msg);
        if (e.seq > state.freshSeq) li.classList.add('fresh');
        return li;
      }));
    }
    state.freshSeq = state.lastSeq;
    $('events-count').textContent = state.events.length ? state.events.length + ' kept, newest first' : '';
  }

  // ---- switchover --------------------------------------------------------------

  function openSwitchover(target) {
    const t = state.topo;
    if (!t || !t.routing.master) return;
    $('confirm-from').textContent = t.routing.master;
    const sel = $('confirm-target');
    const opts = [el('option', { text: 'the best replica (the proxy chooses)' })];
    opts[0].value = '';
    for (const s of serversOf(t)) {
      if (!eligible(t, s)) continue;
      const o = el('option', { text: s.addr + ' (priority ' + s.priority + (s.lag_bytes ? ', ' + fmtBytes(s.lag_bytes) + ' behind' : ', in sync') + ')' });
      o.value = s.addr;
      opts.push(o);
    }
    sel.replaceChildren(...opts);
    sel.value = target || '';
    $('confirm-token-note').hidden = !!(token() || memoryToken);
    $('confirm-ok').disabled = false;
    $('confirm-ok').textContent = 'Switch over';
    $('toast').hidden = true;
    $('confirm').showModal();
  }

  async function doSwitchover() {
    const target = $('confirm-target').value;
    const ok = $('confirm-ok');
    ok.disabled = true;
    ok.textContent = 'Switching…';
    try {
      const resp = await fetch('/switchover?target=' + encodeURIComponent(target), {
        method: 'POST', headers: authHeaders(), cache: 'no-store',
      });
      if (!resp.ok) {
        let msg = await errorOf(resp);
        if (resp.status === 401) msg = 'Refused: ' + msg + ' (enter it with the token button at the top).';
        else msg = 'Switchover failed: ' + msg;
        toast(msg, true);
      } else {
        const res = await resp.json();
        toast('Switched over: ' + res.to + ' is master (epoch ' + res.epoch + '); writes held ' + fmtDur(res.held_ns) + '.', false);
      }
    } catch (e) {
      toast('Switchover: no answer from the proxy (' + e.message + ')', true);
    } finally {
      $('confirm').close();
      refreshTopology();
    }
  }

  // ---- adding and removing servers ------------------------------------------------

  // addrProblem checks an address loosely before it is sent, to catch a
  // typing slip at once; the proxy checks it strictly (and whether it is
  // listed already), and its refusal is shown in its own words.
  function addrProblem(v) {
    if (!v) return 'Enter the server\'s address, such as 10.0.0.7:6379.';
    if (/[\s,]/.test(v)) return 'One address, without spaces or commas: host:port, such as 10.0.0.7:6379.';
    const m = /^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):(\d+)$/.exec(v);
    if (!m) return 'Want host:port, such as 10.0.0.7:6379 or redis-3:6379 ([::1]:6379 for IPv6).';
    const port = Number(m[2]);
    if (port < 1 || port > 65535) return 'The port must be from 1 to 65535.';
    return '';
  }

  function dialogError(id, msg) {
    const e = $(id);
    e.textContent = msg;
    e.hidden = !msg;
  }

  // refusal is the text shown for a refused change: the proxy's own words.
  function refusal(status, msg) {
    if (status === 401) return 'Refused: ' + msg + ' (cancel, then enter it with the token button at the top).';
    if (/refused/i.test(msg)) return msg.charAt(0).toUpperCase() + msg.slice(1);
    return 'Refused: ' + msg;
  }

  function showTokenNotes() {
    const none = !(token() || memoryToken);
    for (const n of document.querySelectorAll('.token-note')) n.hidden = !none;
  }

  function openAdd() {
    const t = state.topo;
    if (!t || !canChangeServers(t)) return;
    $('add-master').textContent = t.routing.master ? ', ' + t.routing.master : '';
    dialogError('add-error', '');
    showTokenNotes();
    const ok = $('add-ok');
    ok.disabled = false;
    ok.textContent = 'Add server';
    $('toast').hidden = true;
    $('add-dialog').showModal();
    $('add-addr').focus();
  }

  async function doAdd() {
    if ($('add-ok').disabled) return; // one request at a time
    const addr = $('add-addr').value.trim();
    const bad = addrProblem(addr);
    if (bad) {
      dialogError('add-error', bad);
      $('add-addr').focus();
      return;
    }
    dialogError('add-error', '');
    const ok = $('add-ok');
    ok.disabled = true;
    ok.textContent = 'Adding…';
    try {
      const resp = await fetch('/servers?addr=' + encodeURIComponent(addr), {
        method: 'POST', headers: authHeaders(), cache: 'no-store',
      });
      if (!resp.ok) {
        dialogError('add-error', refusal(resp.status, await errorOf(resp)));
        return;
      }
      $('add-dialog').close();
      $('add-addr').value = '';
      toast('Added ' + addr + ': it joins as a replica of the master and serves reads once it has caught up.', false);
    } catch (e) {
      dialogError('add-error', 'No answer from the proxy (' + e.message + ').');
    } finally {
      ok.disabled = false;
      ok.textContent = 'Add server';
      refreshTopology();
    }
  }

  let removing = '';

  function openRemove(addr) {
    const t = state.topo;
    if (!t || !canChangeServers(t)) return;
    removing = addr;
    $('remove-addr').textContent = addr;
    const s = serversOf(t).find((x) => x.addr === addr);
    let what = '';
    if (s && s.joining) what = ' (it is still joining)';
    else if (s && (t.routing.replicas || []).includes(addr)) what = ' (a routed replica of ' + t.routing.master + ')';
    else if (s && !s.up) what = ' (it is down)';
    $('remove-role').textContent = what;
    dialogError('remove-error', '');
    showTokenNotes();
    const ok = $('remove-ok');
    ok.disabled = false;
    ok.textContent = 'Remove';
    $('toast').hidden = true;
    $('remove-dialog').showModal();
  }

  async function doRemove() {
    const addr = removing;
    if (!addr) return;
    const ok = $('remove-ok');
    ok.disabled = true;
    ok.textContent = 'Removing…';
    try {
      const resp = await fetch('/servers/' + encodeURIComponent(addr), {
        method: 'DELETE', headers: authHeaders(), cache: 'no-store',
      });
      if (!resp.ok) {
        dialogError('remove-error', refusal(resp.status, await errorOf(resp)));
        return;
      }
      $('remove-dialog').close();
      toast('Removed ' + addr + ': the proxy no longer routes to it or checks it; the server itself was left as it is.', false);
    } catch (e) {
      dialogError('remove-error', 'No answer from the proxy (' + e.message + ').');
    } finally {
      ok.disabled = false;
      ok.textContent = 'Remove';
      refreshTopology();
    }
  }

  let toastTimer = 0;
  function toast(msg, isError) {
    const t = $('toast');
    t.textContent = msg;
    t.dataset.state = isError ? 'error' : 'ok';
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, isError ? 12000 : 8000);
  }

  // ---- wiring ------------------------------------------------------------------

  function saveLockedToken() {
    const v = $('locked-token').value.trim();
    if (!v) return;
    setToken(v);
    $('locked-token').value = '';
    state.locked = false;
    refreshTopology();
  }

  function init() {
    setToken(token());
    $('token-button').addEventListener('click', () => {
      $('token-input').value = token() || memoryToken;
      $('token-dialog').showModal();
    });
    $('token-save').addEventListener('click', () => {
      setToken($('token-input').value.trim());
      $('token-dialog').close();
      refreshTopology();
    });
    $('token-forget').addEventListener('click', () => {
      setToken('');
      $('token-input').value = '';
      $('token-dialog').close();
    });
    $('token-cancel').addEventListener('click', () => $('token-dialog').close());
    $('token-input').addEventListener('keydown', (e) => { if (e.key === 'Enter') $('token-save').click(); });
    $('locked-save').addEventListener('click', saveLockedToken);
    $('locked-token').addEventListener('keydown', (e) => { if (e.key === 'Enter') saveLockedToken(); });
    $('switchover').addEventListener('click', () => openSwitchover(''));
    $('confirm-cancel').addEventListener('click', () => $('confirm').close());
    $('confirm-ok').addEventListener('click', doSwitchover);
    $('add-server').addEventListener('click', openAdd);
    $('add-cancel').addEventListener('click', () => $('add-dialog').close());
    $('add-ok').addEventListener('click', doAdd);
    $('add-addr').addEventListener('keydown', (e) => { if (e.key === 'Enter') doAdd(); });
    $('add-addr').addEventListener('input', () => dialogError('add-error', ''));
    $('remove-cancel').addEventListener('click', () => $('remove-dialog').close());
    $('remove-ok').addEventListener('click', doRemove);
    setInterval(() => { markLive(); if (state.topo) { renderPair(state.topo); renderTiles(state.topo); } }, 1000);
    renderEvents();
    topologyLoop();
    eventsLoop();
  }

  init();
})();
