/*! beaconlake.js | Apache-2.0 */
// The browser tracker of beaconlake: the readable source. The collector serves
// ../beaconlake.js, built from this file by `python -m beaconlake.ingest.tracker.build`
// (names shortened, comments dropped); run it after every change, a test checks.
//
//   <script src="https://COLLECTOR/beaconlake.js" data-key="WRITE_KEY" async></script>
//
// One closure, in sections: helpers, script tag, storage, identity and consent, events,
// transport (outbox), high-level sequences, capture, public API, boot. Everything the
// browser or the page calls goes through safe(): a broken tracker must never break the
// site, so nothing here throws into the host page. ES5 on purpose: it runs everywhere and
// the pure-Python minifier (calmjs.parse) reads it.
(function (w, d) {
  var VERSION = '0.1.0',
    SESSION_MS = 18e5, // a session ends after 30 minutes without an event
    YEAR_MS = 31536e6, // the anonymous id is renewed after a year unseen
    BATCH_BYTES = 6e4, // a request stays under the browser's 64 KB keepalive/sendBeacon quota
    OUTBOX_EVENTS = 1000, // bounds of this tab's outbox in localStorage
    OUTBOX_BYTES = 5e5,
    DEAD_TAB_MS = 18e5, // an outbox slot not written for this long belongs to a dead tab
    DEFAULTS = {
      respect_do_not_track: true,
      capture_low: true,
      pointer_interval_ms: 100,
      max_low_events_per_page: 1000,
      capture_form_values: false,
      search_params: ['q', 's', 'search', 'query']
    },
    nav = w.navigator,
    loc = w.location,
    old = w.beaconlake;
  if (old && old._loaded) return; // the snippet twice on one page: the first one wins

  // ---- helpers --------------------------------------------------------------------------------

  function now() { return Date.now(); }
  function round(n) { return Math.round(n); }
  // At most n UTF-16 units (2048 by default), never ending in half a surrogate pair (cut there,
  // or left by the page): half an emoji is no valid Unicode, and the collector refuses it.
  function cut(s, n) { return String(s == null ? '' : s).slice(0, n || 2048).replace(/[\ud800-\udbff]$/, ''); }
  function warn(m) { try { w.console.warn('[beaconlake]', m); } catch (e) { /* no console */ } }
  function safe(fn) {
    return function () {
      try { return fn.apply(this, arguments); } catch (e) { warn(e); }
    };
  }
  function each(list, fn) { for (var i = 0; list && i < list.length; i++) fn(list[i], i); }
  function eq(a, b) { return a === b || JSON.stringify(a) === JSON.stringify(b); }
  function copy(o) { return JSON.parse(JSON.stringify(o || {})); }
  // UTF-8 size: the keepalive quota counts bytes, not characters
  function bytes(s) { return unescape(encodeURIComponent(s)).length; }
  function uuid() {
    var b = new Uint8Array(16), s = '', i;
    try { w.crypto.getRandomValues(b); } catch (e) {
      for (i = 0; i < 16; i++) b[i] = Math.random() * 256;
    }
    b[6] = b[6] & 15 | 64; // version 4
    b[8] = b[8] & 63 | 128; // RFC 4122 variant
    for (i = 0; i < 16; i++) s += (i > 3 && i < 11 && !(i % 2) ? '-' : '') + (b[i] + 256).toString(16).slice(1);
    return s;
  }

  // ---- the script tag ---------------------------------------------------------------------------

  var tag = d.currentScript || d.querySelector('script[data-key][src*=beaconlake]');
  function attr(n) { return tag && tag.getAttribute('data-' + n); }
  var KEY = attr('key');
  if (!KEY) return warn('no data-key');
  // the collector: where this script came from (tag.src is always absolute), unless data-api says
  var API = (attr('api') || (/^\w+:\/\/[^/?#]+/.exec(tag.src) || [''])[0]).replace(/\/$/, ''),
    EVENTS = API + '/v1/events?k=' + encodeURIComponent(KEY),
    FLUSH_MS = +attr('flush-ms') || 2000,
    AUTO = attr('auto-pageviews') != 'false',
    HASH = attr('hash') == 'true', // hash-routed sites: a new #fragment is a new page
    SLOT = 'bl_o_' + uuid(), // this tab's outbox in localStorage
    SEQ = 'bl_q_' + KEY,
    CONFIG = 'bl_c_' + KEY;

  // The tenant's settings come from /v1/config; the tag may narrow them, never widen them.
  function settings(t) {
    var s = {}, k, m = attr('max-low');
    for (k in DEFAULTS) s[k] = t && t[k] != null ? t[k] : DEFAULTS[k];
    if (attr('capture-low') == 'false') s.capture_low = false;
    if (attr('form-values') == 'false') s.capture_form_values = false;
    if (attr('respect-dnt') == 'true') s.respect_do_not_track = true;
    if (m && +m < s.max_low_events_per_page) s.max_low_events_per_page = +m;
    return s;
  }

  // ---- storage ----------------------------------------------------------------------------------
  // localStorage can be missing, disabled or throwing (privacy modes, sandboxed frames, a full
  // quota). Small values then fall back to a first-party cookie, and everything to memory.

  var mem = {};
  function get(k) {
    var v;
    try { v = w.localStorage.getItem(k); } catch (e) {
      try { v = decodeURIComponent((d.cookie.match('(^|; )' + k + '=([^;]*)') || [])[2] || '') || null; } catch (e) { /* none */ }
    }
    try { return v == null ? mem[k] : JSON.parse(v); } catch (e) { return mem[k]; }
  }
  function set(k, v, small) {
    var s = JSON.stringify(v);
    try {
      if (v == null) w.localStorage.removeItem(k); else w.localStorage.setItem(k, s);
      return delete mem[k];
    } catch (e) { mem[k] = v; }
    // cookies travel with every request to the site: only small values go there
    if (small) try { d.cookie = k + '=' + encodeURIComponent(s) + ';path=/;samesite=lax;max-age=' + (v == null ? 0 : 31536000); } catch (e) { /* no cookies */ }
  }

  // ---- identity and consent ---------------------------------------------------------------------

  var T = settings(), // effective tracker settings
    opt = get('bl_opt'), // 'out', 'in' (explicit consent) or nothing
    // Do Not Track, and Global Privacy Control, its legally binding successor
    dnt = nav.doNotTrack == '1' || w.doNotTrack == '1' || nav.globalPrivacyControl === true,
    // anonymous mode: no id is read or written; every page load is a new anonymous visitor
    anon = attr('anonymous') == 'true' && opt != 'in',
    off = true, // capturing nothing: opted out, or Do Not Track
    started, ready, booted, aid, uid, sess, view;

  function blocked() { return opt == 'out' || opt != 'in' && T.respect_do_not_track && dnt; }

  // The id is only stored while tracking is allowed: an opted-out browser stores none. Within a
  // page it stays the same until the person is forgotten (reset, opt-out).
  function identity() {
    var a = !anon && get('bl_id');
    aid = a && now() - a.t < YEAR_MS ? a.v : aid || uuid();
    if (!anon && !blocked()) set('bl_id', { v: aid, t: now() }, 1);
    uid = !anon && get('bl_u') || null;
    sess = null;
  }

  function forgetPerson() {
    aid = uid = null;
    each(['bl_id', 'bl_u', 'bl_s'], function (k) { set(k, null, 1); });
    saveSeq(null);
  }

  // One rolling session per browser, shared by its tabs through storage: {id, i: index, t: last}.
  function session(t) {
    var s = !anon && get('bl_s') || sess, fresh = !s || t - s.t > SESSION_MS;
    if (fresh) s = { id: uuid(), i: (s ? s.i : 0) + 1, t: t };
    if (fresh || t - s.t > 1000) { // a write a second is plenty for a 30-minute timeout
      s.t = t;
      if (!anon) set('bl_s', s, 1);
    }
    return sess = s;
  }

  // ---- events -----------------------------------------------------------------------------------

  var tz, buf = [], early = [], nest = 0; // buf: not yet in the outbox; early: before config came
  try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* old browser */ }

  function emit(level, name, props) {
    if (off) return;
    if (level == 'low') {
      // low-level volume is bounded by the tenant's configuration, not by the page
      if (!T.capture_low || view.low >= T.max_low_events_per_page) return view.drop++;
      view.low++;
    }
    var t = now(), s = session(t), ev = {
      event_id: uuid(), level: level, name: name, anonymous_id: aid, session_id: s.id,
      client_ts: t, url: cut(loc.href), referrer: cut(view.ref), title: cut(d.title),
      props: props || {},
      context: {
        locale: nav.language, tz: tz, screen: screen.width + 'x' + screen.height,
        viewport: w.innerWidth + 'x' + w.innerHeight, library: { name: 'beaconlake.js', version: VERSION },
        session_index: s.i, page_view_id: view.id, event_index: view.n++
      }
    };
    if (uid) ev.user_id = uid;
    if (anon) ev.context.anonymous = true;
    buf.push(ev);
    if (buf.length > 49) flush();
    if (ready) detect(ev); else early.push(ev);
  }

  // ---- transport: batches, outbox, retries ------------------------------------------------------
  // Events not yet acknowledged live in `out`, mirrored to this tab's slot in localStorage. The
  // next page load adopts a slot once its tab is gone (x: unloaded), so events survive reloads
  // and crashes, and two live tabs never send the same events.

  // busy: the batch in flight; gone: unloaded, not just hidden; most: events a batch may hold
  var out = [], busy, gone, most = 500;

  function save() { set(SLOT, out.length ? { k: KEY, a: API, t: now(), x: gone, e: out } : null); }

  // Over its bounds, the outbox drops its oldest low-level event first, then its oldest event.
  function take() {
    out = out.concat(buf);
    buf = [];
    var total = bytes(JSON.stringify(out)), i;
    while (out.length > OUTBOX_EVENTS || total > OUTBOX_BYTES) {
      for (i = 0; out[i].level != 'low' && i < out.length - 1; i++);
      if (out[i].level != 'low') i = 0;
      total -= bytes(JSON.stringify(out.splice(i, 1)[0])) + 1; // and its comma
    }
    save();
  }

  function adopt() {
    var ls = w.localStorage, i = ls.length, k, o;
    while (i--) {
      k = ls.key(i);
      o = k && k.indexOf('bl_o_') == 0 && k != SLOT && get(k);
      if (o && o.k == KEY && o.a == API && (o.x || now() - o.t > DEAD_TAB_MS)) {
        set(k, null);
        out = out.concat(o.e || []);
      }
    }
  }

  // The next batch from the outbox: at most `most` events and BATCH_BYTES.
  function batch() {
    var list = [], size = 40;
    each(out, function (e) {
      var n = bytes(JSON.stringify(e)) + 1;
      if (list.length < most && (size + n < BATCH_BYTES || !list.length)) list.push(e), size += n;
    });
    return list;
  }

  function forget(list) {
    var ids = {};
    each(list, function (e) { ids[e.event_id] = 1; });
    out = out.filter(function (e) { return !ids[e.event_id]; });
  }

  // A lone surrogate the page made (a title, a text, props) is written by JSON.stringify as an
  // escape, \udxxx, that the collector refuses; it goes as U+FFFD, what a UTF-8 encoder writes.
  // An escape follows an even number of backslashes; after an odd one it is text the page wrote.
  function body(list) {
    return JSON.stringify({ sent_at: now(), events: list }).replace(/(\\*)\\ud[89a-f]\w\w/g, function (m, b) {
      return b.length % 2 ? m : b + '\\ufffd';
    });
  }

  // POST with fetch (keepalive, no cookies), else XMLHttpRequest. `done` gets the status (0: no
  // answer), the Retry-After header and the response's text.
  function post(text, done) {
    var ctl, x;
    done = safe(done);
    if (w.fetch) {
      try { ctl = new AbortController(); setTimeout(function () { ctl.abort(); }, 15000); } catch (e) { /* old browser */ }
      fetch(EVENTS, { method: 'POST', body: text, keepalive: bytes(text) < 65e3, credentials: 'omit', signal: ctl && ctl.signal })
        .then(function (r) {
          return r.text().then(function (t) { done(r.status, r.headers.get('Retry-After'), t); });
        })
        .catch(function () { done(0); });
    } else {
      x = new XMLHttpRequest();
      x.open('POST', EVENTS);
      x.setRequestHeader('Content-Type', 'text/plain');
      x.timeout = 15000;
      x.onloadend = function () { done(x.status, x.getResponseHeader('Retry-After'), x.responseText); };
      x.send(text);
    }
  }

  // The collector's health, shared by this browser's tabs and kept across page loads: nothing
  // after a success, else {t: no request before this time, f: failures in a row}. So every tab
  // honours a Retry-After, and the backoff goes on growing on the next page.
  function trouble() { return get('bl_wait'); }

  function flush() {
    if (!ready) return;
    if (buf.length) take();
    if (busy || !out.length || now() < (trouble() || {}).t) return;
    var list = busy = batch();
    post(body(list), function (status, retryAfter, text) {
      var bad = [];
      busy = 0;
      // the events the answer names; an index out of the batch names none (else a retry loop)
      try { bad = JSON.parse(text).rejected.map(function (r) { return list[r.index]; }).filter(Boolean); } catch (e) { /* no list */ }
      if (status > 199 && status < 500 && status != 408 && status != 429) {
        // 2xx: durable on the collector, but for those it names as rejected, refused for good.
        // 4xx: refused for good, but when the answer names events, only those: the rest go again.
        // A 400 or 413 that names none may be about one event spoiling the body: halve the
        // batch until that event is alone, so it takes no other event with it.
        if (status > 299) {
          if (bad[0]) list = bad;
          else if (list[1] && (status == 400 || status == 413)) most = list.length >> 1, list = [];
        } else most = 500;
        forget(list);
        set('bl_wait', null);
        if (status > 299 || bad[0]) warn('refused: ' + status + ' ' + text);
        save();
        if (out.length) flush(); // drain what queued up meanwhile
      } else {
        // down, overloaded or timed out: keep the events, wait, try again
        var f = ((trouble() || {}).f || 0) + 1,
          wait = retryAfter ? retryAfter * 1000 : NaN;
        // no usable Retry-After: exponential backoff with jitter, capped at 30 flush intervals
        if (!(wait >= 0)) wait = Math.min(30, Math.pow(2, f)) * FLUSH_MS * (0.5 + Math.random());
        set('bl_wait', { t: now() + wait, f: f });
        save();
      }
    });
  }

  // The page is hidden, and may be killed without another event, or unloaded. sendBeacon
  // outlives the page but reports nothing back, so what it takes counts as sent only while the
  // collector answers well; otherwise the events stay in the outbox for the next page load,
  // which can see an answer.
  function hide() {
    take();
    var flying = busy || [], ok = !trouble(), list;
    forget(flying); // the request in flight answers for these: never beacon them as well
    while (ok && out.length) {
      list = batch();
      try { ok = nav.sendBeacon(EVENTS, body(list)); } catch (e) { ok = 0; }
      if (ok) forget(list);
    }
    // Keep the in-flight ones while the page lives to see the answer, or when the collector is
    // in trouble; a page that is gone leaves them to its keepalive request.
    if (!gone || trouble()) out = flying.concat(out);
    save();
  }

  // ---- high level: the analyst's sequences ------------------------------------------------------
  // Definitions come from /v1/config in the format the server uses. Partial matches survive page
  // loads: recent events of the names the definitions mention are kept in localStorage, cut
  // down to the fields the definitions read: {s: sequence number, i: event id, t: ts, f: fields}.
  // State: {n: last sequence number, h: those events, m: {definition: last s it used},
  // p: matches waiting on not_followed_by [{d: definition, i: event ids, dl: deadline}]}.

  var seqs = [], names, fields, windowMs, seqMem;

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

  // A field that is absent or null does not exist, and then every op but `ne` is false.
  function test(v, p) {
    var x = p.value, op = p.op, has = v != null;
    return op == 'exists' ? has : op == 'ne' ? !eq(v, x) : has && (
      op == 'eq' ? eq(v, x) :
      op == 'in' ? [].concat(x).some(function (y) { return eq(v, y); }) :
      op == 'prefix' ? typeof v == 'string' && v.indexOf(x) == 0 :
      typeof v == 'number' && typeof x == 'number' && (
        op == 'gt' ? v > x : op == 'gte' ? v >= x : op == 'lt' ? v < x : op == 'lte' && v <= x));
  }

  function fits(e, step, prev) {
    return e.f.name == step.name &&
      (step.where || []).every(function (p) { return test(e.f[p.field], p); }) &&
      (step.same || []).every(function (f) { return !prev || e.f[f] != null && eq(e.f[f], prev.f[f]); });
  }

  // Steps in order, each on a later event than the step before, the last step on the newest
  // event, all within within_secs of the first. Depth-first with the oldest candidates first, so
  // the earliest-starting match wins; the work is bounded so no definition can hang the page.
  function match(q, h, after) {
    var last = h[h.length - 1], from = last.t - q.within_secs * 1000, n = q.steps.length, work = 1e4, path = [];
    function step(k, j, prev) {
      if (k == n - 1) return fits(last, q.steps[k], prev) && path.push(last);
      for (; j < h.length - 1 && work--; j++) {
        var e = h[j];
        if (e.s > after && e.t >= from && fits(e, q.steps[k], prev) && step(k + 1, j + 1, e)) return path.unshift(e);
      }
    }
    return step(0, 0) && path;
  }

  function loadSeq() {
    var st = anon ? seqMem : get(SEQ);
    return st && st.h && st.m && st.p ? st : { n: 0, h: [], m: {}, p: [] };
  }
  function saveSeq(st) { if (anon) seqMem = st; else set(SEQ, st); }

  function high(name, ids) {
    emit('high', name, { definition: name, matched_event_ids: ids, source: 'browser' });
  }

  function detect(ev) {
    if (!names[ev.name] || nest > 3) return; // nest: definitions may chain, but not forever
    nest++;
    try {
      var st = loadSeq(), t = ev.client_ts, e = { s: ++st.n, i: ev.event_id, t: t, f: {} }, found = [], k, v;
      for (k in fields) {
        v = ev;
        each(k.split('.'), function (p) { v = v != null && typeof v == 'object' ? v[p] : null; });
        if (v != null) e.f[k] = v;
      }
      // a waiting match dies when its not_followed_by event comes in time
      st.p = st.p.filter(function (p) {
        return !seqs.some(function (q) { return q.name == p.d && q.not_followed_by && t <= p.dl && fits(e, q.not_followed_by); });
      });
      st.h = st.h.filter(function (x) { return x.t >= t - windowMs; }).slice(-199);
      st.h.push(e);
      each(seqs, function (q) {
        var m = q.steps[q.steps.length - 1].name == ev.name && match(q, st.h, st.m[q.name] || 0), neg = q.not_followed_by, ids;
        if (!m) return;
        st.m[q.name] = e.s; // the events of a match take part in no later match of it
        ids = m.map(function (x) { return x.i; });
        if (!neg) return found.push([q.name, ids]);
        st.p.push({ d: q.name, i: ids, dl: neg.within_secs ? t + neg.within_secs * 1000 : m[0].t + q.within_secs * 1000 });
      });
      saveSeq(st);
      each(found, function (f) { high(f[0], f[1]); });
    } finally { nest--; }
  }

  // Waiting matches whose not_followed_by time is up become high-level events.
  function due() {
    var st = loadSeq(), t = now(), ripe = st.p.filter(function (p) { return p.dl < t; });
    if (!ripe.length) return;
    st.p = st.p.filter(function (p) { return p.dl >= t; });
    saveSeq(st);
    each(ripe, function (p) { high(p.d, p.i); });
  }

  // ---- page views and what the page does --------------------------------------------------------
  // view: {id, ref: referrer, url, key, n: events so far, low, drop: low events over the cap,
  // max: scroll depth %, eng: engaged ms, act: last input, seen: page_view sent, left, found: search}

  function key() { return loc.pathname + loc.search + (HASH ? loc.hash : ''); }
  function visible() { return d.visibilityState != 'hidden'; }
  function depth() {
    var h = Math.max(d.documentElement.scrollHeight, d.body ? d.body.scrollHeight : 0);
    return view.max = Math.max(view.max, h ? Math.min(100, round((w.scrollY + w.innerHeight) / h * 100)) : 100);
  }

  function newView(ref) {
    view = { id: uuid(), ref: ref, url: cut(loc.href), key: key(), n: 0, low: 0, drop: 0, max: 0, eng: 0, act: visible() && now() };
  }

  // Engaged time: the time between inputs, at most 15 s after each, while the page is visible.
  function active() {
    var t = now();
    if (view.act && visible()) view.eng += Math.min(t - view.act, 15000);
    view.act = t;
  }

  function pageView(how, props) {
    var u;
    view.seen = 1;
    depth();
    props = copy(props);
    props.navigation = how;
    emit('mid', 'page_view', props);
    try { u = new URL(loc.href).searchParams; } catch (e) { return; }
    each(T.search_params, function (p) {
      var q = u.get(p);
      if (q && !view.found) {
        view.found = 1;
        emit('mid', 'search', { query: cut(q, 256), param: p });
      }
    });
  }

  function leave() {
    if (view.left || !view.seen) return;
    view.left = 1;
    if (visible()) active();
    emit('mid', 'page_leave', { engaged_ms: view.eng, max_scroll_pct: depth(), low_dropped: view.drop });
  }

  // A new page in a single-page app: history.pushState / replaceState, popstate, or by hand.
  function navigated(how, props) {
    if (how != 'manual' && key() == view.key) return; // same page, e.g. replaceState of the state only
    if (view.seen) {
      leave();
      newView(view.url); // the page we come from is the new one's referrer
    }
    pageView(how, props);
  }

  // A short CSS path: up to 4 elements, stopping at one with an id.
  function path(el) {
    for (var p = [], i = 0, s, id, c; el && el.nodeType == 1 && i++ < 4; el = el.parentNode) {
      s = el.tagName.toLowerCase();
      id = el.getAttribute('id');
      c = (el.getAttribute('class') || '').trim();
      p.unshift(id ? s + '#' + id : c ? s + '.' + c.split(/\s+/).slice(0, 2).join('.') : s);
      if (id) break;
    }
    return cut(p.join('>'), 256);
  }

  // Text of what was clicked; never of a field, whose text may be what the person typed.
  function text(el) {
    return /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName) || el.isContentEditable ? '' : cut((el.textContent || '').replace(/\s+/g, ' ').trim(), 64);
  }

  // Position relative to the viewport (x, y) and to the document (page_x, page_y), added to props.
  function pos(o, props) {
    props.x = round(o.clientX);
    props.y = round(o.clientY);
    props.page_x = round(o.pageX);
    props.page_y = round(o.pageY);
    return props;
  }

  var last = {}, burst; // last: when each continuous stream last gave an event
  function sample(k) {
    var t = now();
    return t - (last[k] || 0) >= T.pointer_interval_ms && (last[k] = t);
  }

  function click(e) {
    var el = e.target, t = now(), a, target;
    active();
    if (!el || el.nodeType != 1) return;
    target = path(el);
    emit('low', 'click', pos(e, { target: target, text: text(el), pointer: e.pointerType || 'mouse', button: e.button }));
    // rage click: 3 clicks or more within 1 s and 30 px of the first one
    if (burst && t - burst.t <= 1000 && Math.abs(e.clientX - burst.x) <= 30 && Math.abs(e.clientY - burst.y) <= 30) {
      if (++burst.n == 3) emit('low', 'rage_click', pos(e, { target: target, count: 3 }));
    } else burst = { t: t, x: e.clientX, y: e.clientY, n: 1 };
    a = el.closest && el.closest('a[href]');
    if (a && typeof a.href == 'string') emit('mid', 'link_click', {
      href: cut(a.href), text: text(a), target: path(a),
      outbound: /^http/.test(a.protocol) && a.hostname != loc.hostname
    });
  }

  function submit(e) {
    var f = e.target, values = {}, n = 0, props;
    if (!f || f.tagName != 'FORM') return;
    each(f.querySelectorAll('input,select,textarea'), function (el) {
      n++;
      // never a password, a hidden token, a file, a card number or a one-time code
      if (el.name && !/password|hidden|file/i.test(el.type) && !/cc-|one-time|password/.test(el.autocomplete) &&
        !(/checkbox|radio/.test(el.type) && !el.checked)) values[el.name] = cut(el.value, 256);
    });
    props = {
      form: f.getAttribute('id') || f.getAttribute('name') || path(f), fields: n,
      action: cut(f.getAttribute('action') || loc.href), method: (f.getAttribute('method') || 'get').toLowerCase()
    };
    if (T.capture_form_values) props.values = values;
    emit('mid', 'form_submit', props);
  }

  function on(target, type, fn) { target.addEventListener(type, safe(fn), { capture: true, passive: true }); }

  function begin() {
    started = 1;
    on(d, w.PointerEvent ? 'pointermove' : 'mousemove', function (e) {
      active();
      if (e.pointerType != 'touch' && sample('p')) emit('low', 'pointer_move', pos(e, { pointer: e.pointerType || 'mouse' }));
    });
    on(d, 'click', click);
    on(d, 'submit', submit);
    on(d, 'keydown', active);
    on(d, 'scroll', function (e) {
      active();
      // the document's own scrolling only, not that of a box inside it
      if (e.target == d && sample('s')) emit('low', 'scroll', { x: round(w.scrollX), y: round(w.scrollY), depth_pct: depth() });
    });
    each(['start', 'move', 'end'], function (phase) {
      on(d, 'touch' + phase, function (e) {
        var t = e.changedTouches[0];
        active();
        if (t && (phase != 'move' || sample('t'))) emit('low', 'touch', pos(t, { phase: phase, touches: e.touches.length }));
      });
    });
    on(d, 'visibilitychange', function () {
      if (visible()) view.act = now(); else active(), view.act = 0;
      emit('low', 'visibility', { state: d.visibilityState });
      if (!visible()) hide();
    });
    on(w, 'pagehide', function (e) {
      gone = !e.persisted; // into the back/forward cache is not gone: the page may come back
      leave();
      hide();
    });
    on(w, 'pageshow', function (e) {
      if (!e.persisted) return;
      // back from the back/forward cache: another page load may have adopted our outbox
      var o = get(SLOT);
      gone = 0;
      out = o && o.e || [];
      save(); // alive again: no longer for adoption
      newView(d.referrer);
      pageView('restore');
    });
    // A new page once the router is done: it sets the title after changing the URL, and a
    // redirect (pushState, then replaceState at once) is one page view.
    function later(how) { setTimeout(safe(function () { navigated(how); })); }
    if (AUTO) {
      each(['push', 'replace'], function (how) {
        var m = how + 'State', orig = history[m];
        try {
          history[m] = function () {
            var r = orig.apply(this, arguments); // the page's own errors stay the page's
            later(how);
            return r;
          };
        } catch (e) { /* a frozen history object: no single-page views */ }
      });
      on(w, 'popstate', function () { later('pop'); });
      if (HASH) on(w, 'hashchange', function () { later('hash'); });
    }
  }

  // ---- public API -------------------------------------------------------------------------------

  function refresh() {
    off = blocked();
    if (off) {
      buf = [];
      out = [];
      early = [];
      save();
    } else if (!started && booted) {
      identity();
      begin();
      if (AUTO) pageView('load');
    }
  }

  var methods = {
    // the site's own mid-level events; the name is lower-cased into the collector's alphabet
    track: function (name, props) {
      name = cut(name, 64).toLowerCase().replace(/[^a-z0-9_.:-]+/g, '_');
      if (!name || props != null && (typeof props != 'object' || props instanceof Array)) return warn('track(name, {props})');
      var json = JSON.stringify(props || {});
      if (bytes(json) > 16384) return warn(name + ': props over 16 KiB');
      emit('mid', name, JSON.parse(json)); // a copy: later changes by the page do not leak in
    },
    // this browser's events carry the user's id from now on
    identify: function (userId, traits) {
      if (off || anon || userId == null || userId === '' || userId == uid && !traits) return;
      traits = copy(traits);
      set('bl_u', uid = cut(userId, 128), 1);
      emit('mid', 'identify', { traits: traits });
    },
    // a page view by hand, for sites that set data-auto-pageviews="false"
    page: function (props) { navigated('manual', props); },
    // logout: a new anonymous id, no user, a new session, no partial sequences
    reset: function () {
      forgetPerson();
      identity();
    },
    optOut: function () {
      set('bl_opt', opt = 'out', 1);
      forgetPerson();
      refresh();
    },
    // explicit consent: lifts an opt-out, Do Not Track, and anonymous mode
    optIn: function () {
      set('bl_opt', opt = 'in', 1);
      if (anon) aid = null; // what was sent anonymously stays unlinked to the person
      anon = false;
      identity();
      refresh();
    },
    flush: function () { take(); flush(); },
    ids: function () { return { anonymous_id: aid, user_id: uid, session_id: sess && sess.id }; }
  };

  function run(call) {
    var m = call && methods[call[0]];
    if (m) m.apply(0, [].slice.call(call, 1)); else warn('unknown call ' + (call && call[0]));
  }

  // beaconlake('track', ...), beaconlake.track(...) and beaconlake.q.push([...]) all work,
  // before and after this script has loaded.
  var bl = safe(function () { run(arguments); }), name;
  for (name in methods) bl[name] = safe(methods[name]);
  bl.q = { push: safe(run) };
  bl._loaded = 1;

  // ---- boot -------------------------------------------------------------------------------------

  function configure(c) {
    T = settings(c && c.tracker);
    define(c && c.sequences);
    if (!T.capture_low) buf = buf.filter(function (e) { return e.level != 'low'; });
  }

  function go() {
    if (ready) return;
    ready = 1;
    each(early, safe(detect));
    early = [];
    due();
    flush();
  }

  safe(function () {
    var queued = [].slice.call(old && old.q || []), cached = get(CONFIG), state = /^(identify|reset|opt)/;
    w.beaconlake = bl;
    configure(cached);
    identity();
    newView(d.referrer);
    off = blocked();
    // calls that change who is tracked go first, so that the first page view knows
    each(queued, function (c) { if (state.test(c[0])) safe(run)(c); });
    booted = 1;
    refresh();
    each(queued, function (c) { if (!state.test(c[0])) safe(run)(c); });
    if (!off) safe(adopt)(), take();
    if (cached) go();
    setTimeout(safe(go), 5000); // no answer from /v1/config: carry on with what we have
    setInterval(safe(function () { due(); flush(); }), FLUSH_MS);
    // an opted-out browser makes no request at all; the config request carries no id
    if (opt == 'out' || !w.fetch) return go();
    fetch(API + '/v1/config?k=' + encodeURIComponent(KEY), { credentials: 'omit' })
      .then(function (r) { return r.ok ? r.json() : null; }, function () {
        // unreachable: until a request gets through, unload keeps events instead of beaconing
        if (!trouble()) set('bl_wait', { t: 0, f: 0 });
      })
      .then(safe(function (c) {
        if (c) set(CONFIG, c), configure(c), refresh();
        go();
      }));
  })();
})(window, document);
