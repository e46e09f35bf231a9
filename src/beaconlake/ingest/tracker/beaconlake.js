/*! beaconlake.js 0.1.0 | Apache-2.0 | browser tracker for beaconlake */
// Readable source. The collector serves beaconlake.min.js, made from this file by
// `python -m beaconlake.ingest.tracker.build` (comments and spaces stripped by rjsmin).
//
// <script src="https://COLLECTOR/beaconlake.js" data-key="WRITE_KEY" async></script>
//
// One closure, sections by concern: storage, identity, events, transport (outbox),
// high-level sequences, capture (low and mid), public API, boot. Every entry point the
// browser or the page can call is wrapped by safe(): a broken tracker must never break
// the site, so nothing here throws into the host page.
(function (w, d) {
  'use strict';

  var VERSION = '0.1.0';
  var SESSION_MS = 30 * 60 * 1000; // a session ends after 30 minutes without an event
  var ID_MAX_AGE = 365 * 864e5; // the anonymous id is renewed after a year unseen
  var TEXT_MAX = 2048; // url, title, referrer: the collector's limit
  var BATCH_EVENTS = 50; // flush early once this many events wait
  var BATCH_BYTES = 60000; // one request stays under the 64 KB keepalive/sendBeacon quota
  var OUTBOX_EVENTS = 1000; // bounds of this tab's outbox in localStorage
  var OUTBOX_BYTES = 500000;
  var ABANDONED_MS = 30 * 60 * 1000; // a slot not written for this long belongs to a dead tab
  var DEFAULTS = {
    respect_do_not_track: true,
    capture_low: true,
    pointer_interval_ms: 100,
    max_low_events_per_page: 1000,
    capture_form_values: false,
    search_params: ['q', 's', 'search', 'query']
  };

  var nav = w.navigator, loc = w.location;
  var old = w.beaconlake;
  if (old && old._loaded) return; // the snippet twice on one page: the first one wins

  function now() { return Date.now(); }
  function cut(s, n) { return String(s == null ? '' : s).slice(0, n || TEXT_MAX); }
  function warn(m) { try { w.console.warn('[beaconlake]', m); } catch (e) { /* no console */ } }
  function safe(fn) {
    return function () {
      try { return fn.apply(this, arguments); } catch (e) { warn(e); }
    };
  }
  function each(list, fn) { for (var i = 0; list && i < list.length; i++) fn(list[i], i); }
  function eq(a, b) { return a === b || JSON.stringify(a) === JSON.stringify(b); }
  // UTF-8 size: the keepalive quota counts bytes, not characters.
  function bytes(s) { try { return new Blob([s]).size; } catch (e) { return s.length * 3; } }

  function uuid() {
    var b = new Uint8Array(16), s = '', i;
    try { w.crypto.getRandomValues(b); } catch (e) {
      for (i = 0; i < 16; i++) b[i] = Math.random() * 256;
    }
    b[6] = b[6] & 15 | 64; // version 4
    b[8] = b[8] & 63 | 128; // RFC 4122 variant
    for (i = 0; i < 16; i++) s += (i == 4 || i == 6 || i == 8 || i == 10 ? '-' : '') + (b[i] + 256).toString(16).slice(1);
    return s;
  }

  // ---- configuration from the script tag --------------------------------------------------

  var tag = d.currentScript || d.querySelector('script[data-key][src*="beaconlake"]');
  function attr(n) { return tag ? tag.getAttribute('data-' + n) : null; }
  var KEY = attr('key');
  if (!tag || !KEY) return warn('no data-key on the script tag: nothing is tracked');
  var API = (attr('api') || new URL(tag.src, loc.href).origin).replace(/\/$/, '');
  var Q = '?k=' + encodeURIComponent(KEY);
  var FLUSH_MS = +attr('flush-ms') || 2000;
  var AUTO = attr('auto-pageviews') != 'false';
  var HASH = attr('hash') == 'true'; // hash-routed sites: a new #fragment is a new page
  var SLOT = 'bl_o_' + uuid(); // this tab's outbox slot

  // The tenant's settings come from /v1/config; the tag may narrow them, never widen them.
  function settings(t) {
    var s = {}, k, m = attr('max-low');
    for (k in DEFAULTS) s[k] = t && t[k] != null ? t[k] : DEFAULTS[k];
    if (attr('capture-low') == 'false') s.capture_low = false;
    if (attr('form-values') == 'false') s.capture_form_values = false;
    if (attr('respect-dnt') == 'true') s.respect_do_not_track = true;
    if (m != null && +m < s.max_low_events_per_page) s.max_low_events_per_page = +m;
    return s;
  }

  // ---- storage ----------------------------------------------------------------------------
  // localStorage can be missing, disabled or throwing (privacy modes, sandboxed frames, a full
  // quota). Small values then fall back to a first-party cookie, and everything to memory.

  var mem = {};
  function get(k) {
    var v;
    try { v = w.localStorage.getItem(k); } catch (e) { /* unavailable */ }
    if (v == null) {
      try { v = (d.cookie.match('(?:^|; )' + k + '=([^;]*)') || [])[1]; v = v && decodeURIComponent(v); } catch (e) { v = null; }
    }
    try { return v == null ? mem[k] : JSON.parse(v); } catch (e) { return mem[k]; }
  }
  function set(k, v, cookie) {
    var s = JSON.stringify(v);
    try {
      if (v == null) w.localStorage.removeItem(k); else w.localStorage.setItem(k, s);
      delete mem[k];
      return;
    } catch (e) { mem[k] = v; }
    // cookies travel with every request to the site: only small values go there
    if (cookie) try { d.cookie = k + '=' + encodeURIComponent(s) + ';path=/;samesite=lax;max-age=' + (v == null ? 0 : 31536000); } catch (e) { /* no cookies */ }
  }

  // ---- identity and consent ---------------------------------------------------------------

  var T = settings(); // effective tracker settings
  var opt = get('bl_opt'); // 'out' | 'in' (explicit consent) | undefined
  // Do Not Track, and Global Privacy Control, the legally binding successor to it
  var dnt = nav.doNotTrack == '1' || w.doNotTrack == '1' || nav.globalPrivacyControl === true;
  // Anonymous mode: no id is read or written; each page load is a new anonymous visitor.
  var anon = attr('anonymous') == 'true' && opt != 'in';
  var off = true; // not capturing: opted out, or Do Not Track
  var started = false, ready = false, booted = false;
  var aid, uid, sess, view;

  function blocked() { return opt == 'out' || (opt != 'in' && T.respect_do_not_track && dnt); }

  function identity() {
    var a = !anon && get('bl_id');
    aid = a && now() - a.t < ID_MAX_AGE ? a.v : uuid();
    if (!anon) set('bl_id', { v: aid, t: now() }, 1);
    uid = anon ? null : get('bl_u') || null;
    sess = null;
  }

  // One rolling session per browser, shared by its tabs through storage.
  function session(t) {
    var s = anon ? sess : get('bl_s') || sess;
    var fresh = !s || t - s.t > SESSION_MS;
    if (fresh) s = { id: uuid(), i: (s ? s.i : 0) + 1, t: t };
    if (fresh || t - s.t > 1000) { // one write a second is enough for a 30-minute timeout
      s.t = t;
      if (!anon) set('bl_s', s, 1);
    }
    return sess = s;
  }

  // ---- events -----------------------------------------------------------------------------

  var tz;
  try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* old browser */ }
  var buf = []; // emitted, not yet moved to the outbox
  var early = []; // emitted before the sequence definitions were known
  var nest = 0;

  function emit(level, name, props) {
    if (off) return;
    if (level == 'low') {
      // low-level volume is bounded by the tenant's configuration, not by the page
      if (!T.capture_low || view.low >= T.max_low_events_per_page) return view.dropped++;
      view.low++;
    }
    var t = now(), s = session(t);
    var ev = {
      event_id: uuid(), level: level, name: name, anonymous_id: aid, session_id: s.id,
      client_ts: t, url: cut(loc.href), referrer: cut(view.ref), title: cut(d.title),
      props: props || {},
      context: {
        locale: nav.language, tz: tz, screen: w.screen.width + 'x' + w.screen.height,
        viewport: w.innerWidth + 'x' + w.innerHeight, library: { name: 'beaconlake.js', version: VERSION },
        session_index: s.i, page_view_id: view.id, event_index: view.n++
      }
    };
    if (uid) ev.user_id = uid;
    if (anon) ev.context.anonymous = true;
    buf.push(ev);
    if (buf.length >= BATCH_EVENTS) flush();
    if (ready) detect(ev); else early.push(ev);
  }

  // ---- transport: batches, outbox, retries --------------------------------------------------
  // Events not yet acknowledged live in `out`, mirrored to this tab's slot in localStorage
  // (bl_o_<tab id>). A slot is adopted by the next page load once its tab is gone, so events
  // survive reloads and crashes without two live tabs ever sending the same events.

  var out = [], busy = null, gone = false; // gone: the page was unloaded, not just hidden

  function save() {
    set(SLOT, out.length ? { k: KEY, a: API, t: now(), x: gone, e: out } : null);
  }

  // Over the cap: drop the oldest low-level events first, then the oldest of any level.
  function bound() {
    var sizes = [], total = 0, i;
    each(out, function (e) { var n = bytes(JSON.stringify(e)); sizes.push(n); total += n; });
    while (out.length > OUTBOX_EVENTS || total > OUTBOX_BYTES) {
      for (i = 0; i < out.length && out[i].level != 'low'; i++);
      if (i == out.length) i = 0;
      total -= sizes[i];
      out.splice(i, 1);
      sizes.splice(i, 1);
    }
  }

  function take() {
    if (!buf.length) return;
    out = out.concat(buf);
    buf = [];
    bound();
    save();
  }

  function adopt() {
    var ls, i, k, o;
    try { ls = w.localStorage; i = ls.length; } catch (e) { return; }
    while (i--) {
      k = ls.key(i);
      if (k && k.indexOf('bl_o_') == 0 && k != SLOT) {
        o = get(k);
        if (o && o.k == KEY && o.a == API && (o.x || now() - o.t > ABANDONED_MS)) {
          set(k, null);
          out = [].concat(o.e || [], out);
        }
      }
    }
    bound();
    save();
  }

  // The next batch from the head of the outbox: at most 500 events and BATCH_BYTES.
  function batch() {
    var list = [], size = 40;
    each(out, function (e) {
      var n = bytes(JSON.stringify(e)) + 1;
      if (list.length < 500 && (size + n < BATCH_BYTES || !list.length)) { list.push(e); size += n; }
    });
    return list;
  }

  function forget(list) {
    var gone = {};
    each(list, function (e) { gone[e.event_id] = 1; });
    out = out.filter(function (e) { return !gone[e.event_id]; });
  }

  function body(list) { return JSON.stringify({ sent_at: now(), events: list }); }

  // POST with fetch (keepalive, no cookies) or, without fetch, XMLHttpRequest. `done` gets
  // the status (0 for a network error), the Retry-After header and the response text.
  function post(text, done) {
    var url = API + '/v1/events' + Q, ctl, timer, x;
    done = safe(done);
    if (w.fetch) {
      try { ctl = new AbortController(); timer = setTimeout(function () { ctl.abort(); }, 15000); } catch (e) { /* old browser */ }
      w.fetch(url, { method: 'POST', body: text, keepalive: bytes(text) < 65000, credentials: 'omit', signal: ctl && ctl.signal })
        .then(function (r) {
          return r.text().then(function (t) { done(r.status, r.headers.get('Retry-After'), t); });
        })
        .catch(function () { done(0); })
        .then(function () { clearTimeout(timer); });
    } else {
      x = new XMLHttpRequest();
      x.open('POST', url);
      x.setRequestHeader('Content-Type', 'text/plain');
      x.timeout = 15000;
      x.onloadend = function () { done(x.status, x.getResponseHeader('Retry-After'), x.responseText); };
      x.send(text);
    }
  }

  // The collector's health, shared by the tabs of this browser and kept across page loads:
  // null after a success, else {t: no request before this time, f: failures in a row}. So a
  // Retry-After holds for every tab, and the backoff goes on growing on the next page.
  function trouble() { return get('bl_wait'); }

  function flush() {
    if (!ready) return;
    take();
    if (busy || !out.length || now() < (trouble() || {}).t) return;
    var list = busy = batch();
    post(body(list), function (status, retryAfter, text) {
      busy = null;
      if (status >= 200 && status < 500 && status != 408 && status != 429) {
        // durable on the collector (2xx), or refused for good (4xx): either way never resend
        forget(list);
        set('bl_wait', null);
        if (status > 299 || /"index"/.test(text)) warn('collector refused events (' + status + '): ' + text);
        save();
        if (out.length) flush(); // drain what queued up meanwhile
      } else {
        // down, overloaded, or timed out: keep the events, wait, try again
        var f = ((trouble() || {}).f || 0) + 1;
        var wait = retryAfter ? (+retryAfter >= 0 ? retryAfter * 1000 : Date.parse(retryAfter) - now()) : NaN;
        // no usable Retry-After: exponential backoff with jitter, capped at 30 flush intervals
        if (!(wait >= 0)) wait = Math.min(30 * FLUSH_MS, FLUSH_MS * Math.pow(2, f)) * (0.5 + Math.random());
        set('bl_wait', { t: now() + wait, f: f });
        save();
      }
    });
  }

  // The page is going away, or hidden (and maybe killed without another event). sendBeacon
  // outlives the page but reports nothing back, so events handed to it count as sent only
  // when the collector answered the last request well; otherwise they stay in the outbox and
  // the next page load sends them, where an answer can be seen.
  function hide() {
    take();
    if (!trouble()) {
      if (busy && gone) forget(busy); // an in-flight keepalive fetch completes without us
      while (out.length) {
        var list = batch(), ok = false;
        try { ok = nav.sendBeacon(API + '/v1/events' + Q, body(list)); } catch (e) { /* no sendBeacon */ }
        if (!ok) break;
        forget(list);
      }
    }
    save();
  }

  // ---- high level: the analyst's sequences ----------------------------------------------------
  // Definitions come from /v1/config in the format the server uses. Partial matches survive
  // page loads: recent events of the names a definition mentions are kept in localStorage,
  // reduced to the fields the definitions read.

  var seqs = [], names = {}, fields = {}, windowMs = 0, seqMem;
  var SEQ = 'bl_q_' + KEY;

  function define(list) {
    seqs = list || [];
    names = {};
    fields = { name: 1 };
    windowMs = 0;
    each(seqs, function (q) {
      windowMs = Math.max(windowMs, q.within_secs * 1000);
      each(q.steps.concat(q.not_followed_by || []), function (s) {
        names[s.name] = 1;
        each(s.where, function (p) { fields[p.field] = 1; });
        each(s.same, function (f) { fields[f] = 1; });
      });
    });
  }

  // `props.a.b` addresses a nested value; `name`, `url`, `title`... a top-level field.
  function field(ev, path) {
    var v = ev;
    each(path.split('.'), function (k) { v = v != null && typeof v == 'object' ? v[k] : undefined; });
    return v;
  }

  // A field that is absent or null does not exist: every op but `ne` is then false.
  function test(v, p) {
    var x = p.value, op = p.op, has = v != null;
    if (op == 'exists') return has;
    if (op == 'ne') return !eq(v, x);
    if (op == 'eq') return has && eq(v, x);
    if (op == 'in') return has && [].concat(x).some(function (y) { return eq(v, y); });
    if (op == 'prefix') return typeof v == 'string' && v.indexOf(x) == 0;
    if (typeof v != 'number' || typeof x != 'number') return false;
    return op == 'gt' ? v > x : op == 'gte' ? v >= x : op == 'lt' ? v < x : op == 'lte' && v <= x;
  }

  function fits(e, step, prev) {
    return e.f.name == step.name &&
      (step.where || []).every(function (p) { return test(e.f[p.field], p); }) &&
      (step.same || []).every(function (f) { return !prev || e.f[f] != null && eq(e.f[f], prev.f[f]); });
  }

  // Steps in order, each on a later event than the one before, the last step on the newest
  // event, all within within_secs. Depth-first with the oldest candidates first, so the
  // earliest-starting match wins; the work is bounded so no definition can hang the page.
  function match(q, h, after) {
    var last = h[h.length - 1], from = last.t - q.within_secs * 1000, n = q.steps.length, work = 1e4, path = [];
    function step(k, j, prev) {
      if (--work < 0) return false;
      if (k == n - 1) return fits(last, q.steps[k], prev) && path.push(last);
      for (; j < h.length - 1 && work-- > 0; j++) {
        var e = h[j];
        if (e.s > after && e.t >= from && fits(e, q.steps[k], prev) && step(k + 1, j + 1, e)) return path.unshift(e);
      }
      return false;
    }
    return step(0, 0, null) && path;
  }

  function loadSeq() {
    var st = anon ? seqMem : get(SEQ);
    return st && st.h && st.m && st.p ? st : { n: 0, h: [], m: {}, p: [] };
  }
  function saveSeq(st) { if (anon) seqMem = st; else set(SEQ, st); }

  function high(q, ids) {
    emit('high', q.name, { definition: q.name, matched_event_ids: ids, source: 'browser' });
  }

  function detect(ev) {
    if (!names[ev.name] || nest > 3) return; // nest: definitions that chain on each other
    nest++;
    try {
      var st = loadSeq(), t = ev.client_ts, e = { s: ++st.n, i: ev.event_id, t: t, f: {} }, found = [], k, v;
      for (k in fields) if ((v = field(ev, k)) !== undefined) e.f[k] = v;
      // a pending match dies when its not_followed_by event comes in time
      st.p = st.p.filter(function (p) {
        var q = seqs.filter(function (q) { return q.name == p.d; })[0], neg = q && q.not_followed_by;
        return !(neg && t <= p.dl && fits(e, neg, null));
      });
      st.h = st.h.filter(function (x) { return x.t >= t - windowMs; }).slice(-199);
      st.h.push(e);
      each(seqs, function (q) {
        var m = q.steps[q.steps.length - 1].name == ev.name && match(q, st.h, st.m[q.name] || 0), neg = q.not_followed_by;
        if (!m) return;
        st.m[q.name] = e.s; // events of one match take part in no later match of it
        var ids = m.map(function (x) { return x.i; });
        if (neg) st.p.push({ d: q.name, i: ids, dl: neg.within_secs ? t + neg.within_secs * 1000 : m[0].t + q.within_secs * 1000 });
        else found.push([q, ids]);
      });
      saveSeq(st);
      each(found, function (f) { high(f[0], f[1]); });
    } finally { nest--; }
  }

  // Matches waiting on a not_followed_by whose time is up become high-level events.
  function due() {
    if (!seqs.some(function (q) { return q.not_followed_by; })) return;
    var st = loadSeq(), t = now(), ripe = st.p.filter(function (p) { return p.dl < t; });
    if (!ripe.length) return;
    st.p = st.p.filter(function (p) { return p.dl >= t; });
    saveSeq(st);
    each(ripe, function (p) {
      each(seqs, function (q) { if (q.name == p.d) high(q, p.i); });
    });
  }

  // ---- page views and what the page does ------------------------------------------------------

  function key() { return loc.pathname + loc.search + (HASH ? loc.hash : ''); }
  function visible() { return d.visibilityState != 'hidden'; }
  function depth() {
    var de = d.documentElement, h = Math.max(de.scrollHeight, d.body ? d.body.scrollHeight : 0);
    return h ? Math.min(100, Math.round((w.scrollY + w.innerHeight) / h * 100)) : 100;
  }

  function newView(ref) {
    view = { id: uuid(), ref: ref, url: cut(loc.href), key: key(), n: 0, low: 0, dropped: 0, max: 0, eng: 0, act: visible() ? now() : 0 };
  }

  // Engaged time: time between inputs, counting at most 15 s after each, and only while visible.
  function active() {
    var t = now();
    if (view.act && visible()) view.eng += Math.min(t - view.act, 15000);
    view.act = t;
  }

  function pageView(how, props) {
    view.viewed = true;
    view.max = Math.max(view.max, depth());
    emit('mid', 'page_view', extend({ navigation: how }, props));
    var u;
    try { u = new URL(loc.href).searchParams; } catch (e) { return; }
    each(T.search_params, function (p) {
      var v = u.get(p);
      if (v && !view.searched) { view.searched = 1; emit('mid', 'search', { query: cut(v, 256), param: p }); }
    });
  }

  function leave() {
    if (view.left || !view.viewed) return;
    view.left = true;
    if (visible()) active();
    view.max = Math.max(view.max, depth());
    emit('mid', 'page_leave', { engaged_ms: view.eng, max_scroll_pct: view.max, low_dropped: view.dropped });
  }

  // SPA navigation: history.pushState / replaceState and popstate (back, forward).
  function navigated(how, props) {
    if (how != 'manual' && key() == view.key) return; // same page, e.g. a replaceState of state only
    if (view.viewed) {
      leave();
      newView(view.url); // the page we come from is the new view's referrer
    }
    pageView(how, props);
  }

  function path(el) {
    for (var p = [], i = 0; el && el.nodeType == 1 && i < 4; el = el.parentNode, i++) {
      var s = el.tagName.toLowerCase(), id = el.getAttribute('id'), c = el.getAttribute('class');
      if (id) { p.unshift(s + '#' + id); break; }
      if (c && c.trim()) s += '.' + c.trim().split(/\s+/).slice(0, 2).join('.');
      p.unshift(s);
    }
    return p.join('>').slice(0, 256);
  }

  // Text of what was clicked; never of a field, whose text may be what the person typed.
  function text(el) {
    return /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName) || el.isContentEditable ? '' : (el.textContent || '').replace(/\s+/g, ' ').trim().slice(0, 64);
  }

  function pos(o) {
    return { x: Math.round(o.clientX), y: Math.round(o.clientY), page_x: Math.round(o.pageX), page_y: Math.round(o.pageY) };
  }
  function extend(a, b) { for (var k in b) a[k] = b[k]; return a; }

  var last = {}; // sampling: one event of each continuous stream per pointer_interval_ms
  function sample(k) {
    var t = now();
    if (t - (last[k] || 0) < T.pointer_interval_ms) return false;
    return last[k] = t;
  }

  var burst = null;
  function click(e) {
    active();
    var el = e.target, t = now(), p = pos(e), a;
    if (!el || el.nodeType != 1) return;
    var target = path(el), words = text(el);
    emit('low', 'click', extend(p, { target: target, text: words, pointer: e.pointerType || 'mouse', button: e.button }));
    // rage click: 3 or more clicks within 1 s and 30 px of the first one
    if (burst && t - burst.t <= 1000 && Math.abs(e.clientX - burst.x) <= 30 && Math.abs(e.clientY - burst.y) <= 30) {
      if (++burst.n == 3) emit('low', 'rage_click', extend(p, { target: target, count: 3 }));
    } else burst = { t: t, x: e.clientX, y: e.clientY, n: 1 };
    a = el.closest && el.closest('a[href]');
    if (a && typeof a.href == 'string') {
      emit('mid', 'link_click', {
        href: cut(a.href), text: text(a), target: path(a),
        outbound: /^https?:$/.test(a.protocol) && a.hostname != loc.hostname
      });
    }
  }

  var SECRET = /^(password|hidden|file)$/i;
  function submit(e) {
    var f = e.target, values = {}, n = 0;
    if (!f || f.tagName != 'FORM') return;
    each(f.querySelectorAll('input,select,textarea'), function (el) {
      n++;
      // never a password, a hidden token, a card number or a one-time code
      if (!el.name || SECRET.test(el.type) || /cc-|one-time|password/.test(el.autocomplete || '')) return;
      if (/^(checkbox|radio)$/.test(el.type) && !el.checked) return;
      values[el.name] = cut(el.value, 256);
    });
    var props = {
      form: f.getAttribute('id') || f.getAttribute('name') || path(f),
      action: cut(f.getAttribute('action') || loc.href), method: (f.getAttribute('method') || 'get').toLowerCase(), fields: n
    };
    if (T.capture_form_values) props.values = values;
    emit('mid', 'form_submit', props);
  }

  function on(target, type, fn, capture) {
    target.addEventListener(type, safe(fn), { capture: !!capture, passive: true });
  }

  function begin() {
    started = true;
    var pointer = 'onpointermove' in w ? 'pointermove' : 'mousemove';
    on(d, pointer, function (e) {
      active();
      if (e.pointerType != 'touch' && sample('p')) emit('low', 'pointer_move', extend(pos(e), { pointer: e.pointerType || 'mouse' }));
    }, 1);
    on(d, 'click', click, 1);
    on(d, 'submit', submit, 1);
    on(d, 'keydown', active, 1);
    on(w, 'scroll', function () {
      active();
      if (!sample('s')) return;
      var pct = depth();
      view.max = Math.max(view.max, pct);
      emit('low', 'scroll', { x: Math.round(w.scrollX), y: Math.round(w.scrollY), depth_pct: pct });
    });
    each(['touchstart', 'touchmove', 'touchend'], function (type) {
      on(d, type, function (e) {
        active();
        var t = e.changedTouches && e.changedTouches[0], phase = type.slice(5);
        if (t && (phase != 'move' || sample('t'))) emit('low', 'touch', extend(pos(t), { phase: phase, touches: e.touches.length }));
      }, 1);
    });
    on(d, 'visibilitychange', function () {
      if (visible()) view.act = now(); else { active(); view.act = 0; }
      emit('low', 'visibility', { state: d.visibilityState });
      if (!visible()) hide();
    });
    on(w, 'pagehide', function (e) {
      gone = !e.persisted; // into the back/forward cache is not gone: it may come back
      leave();
      hide();
    });
    on(w, 'pageshow', function (e) {
      if (!e.persisted) return;
      // back from the back/forward cache: our slot may have been adopted meanwhile
      var o = get(SLOT);
      gone = false;
      out = o && o.e || [];
      save();
      newView(d.referrer);
      pageView('restore');
    });
    if (AUTO) {
      each(['pushState', 'replaceState'], function (m) {
        var orig = w.history[m];
        try {
          w.history[m] = function () {
            var r = orig.apply(this, arguments); // the page's own errors stay the page's
            safe(navigated)(m == 'pushState' ? 'push' : 'replace');
            return r;
          };
        } catch (e) { /* a frozen history object: no SPA page views */ }
      });
      on(w, 'popstate', function () { navigated('pop'); });
      if (HASH) on(w, 'hashchange', function () { navigated('hash'); });
    }
  }

  // ---- public API -----------------------------------------------------------------------------

  function refresh() {
    off = blocked();
    if (off) {
      buf = []; out = []; early = [];
      save();
    } else if (!started && booted) {
      begin();
      if (AUTO) pageView('load');
    }
  }

  var methods = {
    // the site's own mid-level events; the name is lower-cased to the collector's alphabet
    track: function (name, props) {
      name = cut(name, 64).toLowerCase().replace(/[^a-z0-9_.:-]+/g, '_');
      if (!name) return warn('track() needs an event name');
      if (props != null && (typeof props != 'object' || Array.isArray(props))) return warn('track(): props must be an object');
      var json = JSON.stringify(props || {});
      if (bytes(json) > 16384) return warn('track(' + name + '): props over 16 KiB, event not sent');
      emit('mid', name, JSON.parse(json)); // a copy: later changes by the page do not leak in
    },
    // links this browser's events to a known user from now on
    identify: function (userId, traits) {
      if (off || anon || userId == null || userId === '') return;
      userId = cut(userId, 128);
      if (userId == uid && !traits) return; // sites often call identify on every page
      traits = JSON.parse(JSON.stringify(traits || {}));
      uid = userId;
      set('bl_u', uid, 1);
      emit('mid', 'identify', { traits: traits });
    },
    // a page view by hand, for sites that set data-auto-pageviews="false"
    page: function (props) {
      if (!off) navigated('manual', JSON.parse(JSON.stringify(props || {})));
    },
    // logout: a new anonymous id, no user, a new session, no partial sequences
    reset: function () {
      set('bl_id', null, 1);
      set('bl_u', null, 1);
      set('bl_s', null, 1);
      saveSeq(null);
      identity();
    },
    optOut: function () {
      opt = 'out';
      set('bl_opt', opt, 1);
      set('bl_u', null, 1);
      set('bl_s', null, 1);
      set('bl_id', null, 1);
      saveSeq(null);
      refresh();
    },
    // explicit consent: lifts an opt-out, Do Not Track, and anonymous mode
    optIn: function () {
      opt = 'in';
      set('bl_opt', opt, 1);
      if (anon) { anon = false; identity(); }
      refresh();
    },
    flush: function () { take(); flush(); },
    ids: function () { return { anonymous_id: aid, user_id: uid, session_id: sess && sess.id }; }
  };

  function run(call) {
    var m = call && methods[call[0]];
    if (m) m.apply(null, [].slice.call(call, 1)); else warn('unknown call ' + (call && call[0]));
  }

  // `beaconlake('track', ...)`, `beaconlake.track(...)` and `beaconlake.q.push([...])` all work,
  // before and after this script has loaded.
  var bl = safe(function () { run(arguments); });
  for (var m in methods) bl[m] = safe(methods[m]);
  bl.q = { push: safe(run) };
  bl._loaded = true;

  // ---- boot -----------------------------------------------------------------------------------

  function configure(c) {
    T = settings(c && c.tracker);
    define(c && c.sequences);
    if (!T.capture_low) buf = buf.filter(function (e) { return e.level != 'low'; });
  }

  function go() {
    if (ready) return;
    ready = true;
    var list = early;
    early = [];
    each(list, safe(detect));
    due();
    flush();
  }

  safe(function () {
    var queued = [].slice.call((old && old.q) || []), cached = get('bl_c_' + KEY), state = /^(identify|reset|opt)/;
    w.beaconlake = bl;
    configure(cached);
    identity();
    newView(d.referrer);
    off = blocked();
    // calls that change who is tracked go first, so the first page view already knows
    each(queued, function (c) { if (state.test(c[0])) safe(run)(c); });
    booted = true;
    refresh();
    each(queued, function (c) { if (!state.test(c[0])) safe(run)(c); });
    if (!off) safe(adopt)();
    if (cached) go();
    setTimeout(safe(go), 5000); // no answer from /v1/config: carry on with what we have
    setInterval(safe(function () { due(); flush(); }), FLUSH_MS);
    // an opted-out browser makes no request at all; the config request carries no id
    if (opt == 'out' || !w.fetch) return go();
    w.fetch(API + '/v1/config' + Q, { credentials: 'omit' })
      .then(function (r) { return r.ok ? r.json() : null; }, function () {
        // unreachable: until a request gets through, unload keeps events instead of beaconing
        if (!trouble()) set('bl_wait', { t: 0, f: 0 });
      })
      .then(safe(function (c) {
        if (c) { set('bl_c_' + KEY, c); configure(c); refresh(); }
        go();
      }));
  })();
})(window, document);
