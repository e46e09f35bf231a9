/* The dashboard page: read-key login, a view per hash route, data from /v1/dashboard/... and the
   profiles API. Plain JS, no build step. */
"use strict";
(function () {
  var esc = charts.esc, num = charts.num, $ = function (s) { return document.querySelector(s); };
  var KEY = "beaconlake.read_key", info = null, timer = null, lastPipeline = null;
  var LEVELS = [{key: "low", color: "#9db4d8"}, {key: "mid", color: "#3d6fd8"}, {key: "high", color: "#e0752d"}];
  var RANGES = [["1", "last 24 hours"], ["7", "last 7 days"], ["30", "last 30 days"], ["90", "last 90 days"]];

  function Unauthorized() {}
  // Every answer is read as text first: an error may come from a proxy or the server as plain
  // text or HTML, and is then shown as it is rather than as a JSON parse error.
  function api(path, opts) {
    opts = opts || {};
    opts.headers = {authorization: "Bearer " + sessionStorage.getItem(KEY)};
    return fetch(path, opts).then(function (r) {
      if (r.status === 401) { logout("The read key was refused."); throw new Unauthorized(); }
      return r.text().then(function (text) {
        var body = null;
        try { body = JSON.parse(text); } catch (e) { /* not JSON */ }
        if (!r.ok) throw new Error((body && body.error) || ("HTTP " + r.status + (text ? ": " + text.slice(0, 200) : "")));
        if (body === null) throw new Error("HTTP " + r.status + ": the answer is not JSON");
        return body;
      });
    });
  }
  function view(html) { $("#view").innerHTML = html; }
  function card(title, body, cls) { return '<div class="card ' + (cls || "") + '"><h2>' + esc(title) + "</h2>" + body + "</div>"; }
  function kpi(label, value) { return '<div class="kpi"><div class="v">' + esc(value) + '</div><div class="l">' + esc(label) + "</div></div>"; }
  function note(text) { return '<div class="note">' + esc(text) + "</div>"; }
  function pct(v) { return v == null ? "–" : (v * 100).toFixed(1) + "%"; }
  function secs(ms) { return ms == null ? "–" : ms < 60000 ? (ms / 1000).toFixed(1) + " s" : (ms / 60000).toFixed(1) + " min"; }
  function bytes(b) { return b < 1024 ? b + " B" : b < 1048576 ? (b / 1024).toFixed(1) + " KB" : (b / 1048576).toFixed(1) + " MB"; }
  function hhmm(ms) { var d = new Date(ms); return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2); }
  function day(ms) { var d = new Date(ms); return d.toLocaleDateString(undefined, {month: "short", day: "numeric"}); }
  function when(ms) { return ms ? new Date(ms).toLocaleString() : "–"; }
  function rangeQuery() {
    var days = +(sessionStorage.getItem("beaconlake.range") || 7);
    return "from=" + (Date.now() - days * 86400000) + "&to=" + (Date.now() + 60000);
  }
  function rangePicker() {
    var cur = sessionStorage.getItem("beaconlake.range") || "7";
    return '<div class="toolbar"><label>Range <select id="range">' + RANGES.map(function (r) {
      return '<option value="' + r[0] + '"' + (r[0] === cur ? " selected" : "") + ">" + r[1] + "</option>";
    }).join("") + "</select></label></div>";
  }
  function bindRange() {
    $("#range").onchange = function () { sessionStorage.setItem("beaconlake.range", this.value); route(); };
  }
  function rows(list, label, value, extra) {
    return (list || []).map(function (r) { return {label: r[label], value: r[value], note: extra ? extra(r) : null}; });
  }
  function table(cols, list) {
    return "<table><tr>" + cols.map(function (c) { return "<th" + (c.n ? ' class="n"' : "") + ">" + esc(c.t) + "</th>"; }).join("") + "</tr>" +
      list.map(function (r) {
        return "<tr>" + cols.map(function (c) { var v = c.f(r); return "<td" + (c.n ? ' class="n"' : "") + ">" + (c.html ? v : esc(v)) + "</td>"; }).join("") + "</tr>";
      }).join("") + "</table>";
  }

  // -- views ------------------------------------------------------------------------------------

  function live() {
    return api("/v1/dashboard/live").then(function (d) {
      var byMinute = {};
      for (var m = d.from; m <= d.now; m += 60000) byMinute[m] = {x: m, values: {}};
      d.minutes.forEach(function (r) { if (byMinute[r.start]) byMinute[r.start].values[r.level] = r.events; });
      var events = d.minutes.reduce(function (s, r) { return s + r.events; }, 0);
      var hl = Object.keys(d.high_level_24h).map(function (k) { return {label: k, value: d.high_level_24h[k], note: (d.high_level[k] || 0) + " in the last hour"}; });
      view((d.note ? note(d.note) : "") + '<div class="kpis">' + kpi("active people (5 min)", d.active_people) + kpi("people, last hour", d.people_last_hour || 0) +
        kpi("events, last hour", num(events)) + kpi("high-level events, last hour", Object.values(d.high_level).reduce(function (a, b) { return a + b; }, 0)) + "</div>" +
        card("Events per minute by level, last hour", charts.legend(LEVELS) + charts.stacked(Object.values(byMinute), LEVELS, {xfmt: hhmm, width: 1200, height: 220, empty: "no events in the last hour"})) +
        '<div class="grid">' + card("Top pages (page views, last hour)", charts.hbars(rows(d.pages, "key", "views", function (r) { return r.people + " people"; }))) +
        card("Top events, last hour", charts.hbars(d.names.map(function (r) { return {label: r.key, value: r.events, color: r.level === "low" ? "#9db4d8" : r.level === "high" ? "#e0752d" : "#3d6fd8"}; }))) +
        card("High-level sequences (24 h)", charts.hbars(hl, {color: "#e0752d", empty: "no sequence matched in 24 hours"})) +
        card("Rejected events by reason (24 h)", charts.hbars(rows(d.rejected, "key", "events"), {color: "#d23f3f", empty: "nothing rejected in 24 hours"})) + "</div>");
    });
  }

  function traffic() {
    return api("/v1/dashboard/traffic?" + rangeQuery()).then(function (d) {
      if (!d.ready) return view(rangePicker() + note(d.note)), bindRange();
      var t = d.totals, fmt = d.by === "day" ? day : function (ms) { return day(ms) + " " + hhmm(ms); };
      view(rangePicker() + '<div class="kpis">' + kpi("sessions", num(t.sessions)) + kpi("people", num(t.people)) + kpi("page views", num(t.page_views)) +
        kpi("bounce rate", pct(t.bounce_rate)) + kpi("engaged time / session", secs(t.avg_engaged_ms)) + kpi("avg scroll depth", t.avg_scroll_pct == null ? "–" : t.avg_scroll_pct + "%") + "</div>" +
        '<div class="grid">' +
        card("Sessions and people per " + d.by, charts.legend([{key: "sessions", color: "#3d6fd8"}, {key: "people", color: "#2e9d5b"}]) + charts.lines([
          {label: "sessions", color: "#3d6fd8", points: d.series.map(function (r) { return [r.start, r.sessions]; })},
          {label: "people", color: "#2e9d5b", points: d.series.map(function (r) { return [r.start, r.people]; })}], {xfmt: fmt})) +
        card("Bounce rate per " + d.by, charts.lines([{label: "bounce rate", color: "#d23f3f", points: d.series.map(function (r) { return [r.start, r.bounce_rate]; })}], {xfmt: fmt, max: 1, yfmt: pct})) +
        card("Devices", charts.hbars(rows(d.devices, "key", "sessions", function (r) { return "bounce " + pct(r.bounce_rate); }))) +
        card("Browsers", charts.hbars(rows(d.browsers, "key", "sessions"))) +
        card("Referrers", charts.hbars(rows(d.referrers, "key", "sessions", function (r) { return "bounce " + pct(r.bounce_rate); }))) +
        card("Campaigns (utm source / medium / campaign)", charts.hbars(rows(d.campaigns, "key", "sessions"), {labelWidth: 240})) +
        card("Landing pages", charts.hbars(rows(d.landing_pages, "key", "sessions", function (r) { return "bounce " + pct(r.bounce_rate); }))) +
        card("Scroll depth of page views", charts.hbars(rows(d.scroll_depth, "key", "views"))) + "</div>" +
        card("Top pages", table([{t: "page", f: function (r) { return r.key; }}, {t: "views", n: 1, f: function (r) { return r.views; }},
          {t: "engaged", n: 1, f: function (r) { return secs(r.avg_engaged_ms); }}, {t: "scroll", n: 1, f: function (r) { return r.avg_scroll_pct == null ? "–" : r.avg_scroll_pct + "%"; }}], d.pages)));
      bindRange();
    });
  }

  function sequences() {
    return api("/v1/dashboard/sequences?" + rangeQuery()).then(function (d) {
      if (!d.ready) return view(rangePicker() + note(d.note)), bindRange();
      if (!d.funnels.length) return view(rangePicker() + note("This tenant defines no sequences ([[tenants.sequences]] in beaconlake.toml).")), bindRange();
      view(rangePicker() + d.funnels.map(function (f) {
        return '<div class="card funnel" data-name="' + esc(f.name) + '"><h2>' + esc(f.name) + ' <span class="muted">within ' + f.within_secs + " s" +
          (f.not_followed_by ? ", not followed by " + esc(f.not_followed_by) : "") + "</span></h2>" + charts.funnel(f.steps) +
          table([{t: "step", f: function (s) { return s.step + ". " + s.name; }}, {t: "conditions", f: function (s) { return s.where.concat(s.same.map(function (x) { return "same " + x; })).join(", "); }},
            {t: "people", n: 1, f: function (s) { return s.people; }}, {t: "of step 1", n: 1, f: function (s) { return pct(s.conversion); }},
            {t: "drop-off", n: 1, f: function (s) { return s.drop_off == null ? "" : s.drop_off; }}], f.steps) +
          '<p class="muted">Completed matches (high_level_events): ' + f.completed.events + " by " + f.completed.people + " people.</p></div>";
      }).join(""));
      bindRange();
    });
  }

  function people() {
    var p = new URLSearchParams(location.hash.split("?")[1] || "");
    var q = p.get("q") || "", seg = p.get("segment") || "", trait = p.get("trait") || "";
    var form = '<form class="toolbar" id="search"><input id="q" placeholder="search people: user id, anonymous id…" value="' + esc(q) + '" size="36">' +
      (info.profiles_api ? '<select id="segment"><option value="">any segment</option></select><input id="trait" placeholder="trait, e.g. engagement>0.7" value="' + esc(trait) + '">' : "") +
      '<button class="primary">Search</button></form>';
    var go = function () {
      var qs = new URLSearchParams({q: $("#q").value});
      if (info.profiles_api) { if ($("#segment").value) qs.set("segment", $("#segment").value); if ($("#trait").value) qs.set("trait", $("#trait").value); }
      location.hash = "#people?" + qs.toString();
    };
    var link = function (id) { return '<a class="person" href="#person/' + encodeURIComponent(id) + '">' + esc(id) + "</a>"; };
    if (info.profiles_api) {
      var qs = new URLSearchParams({limit: "50"});
      if (q) qs.set("q", q); if (seg) qs.set("segment", seg); if (trait) qs.set("trait", trait);
      // q searches profiles by text (interests, segment labels) and, in the sessions table, by id
      return Promise.all([api("/v1/profiles?" + qs), api("/v1/segments"), q ? api("/v1/dashboard/people?limit=50&q=" + encodeURIComponent(q)) : null]).then(function (r) {
        var res = r[0], segs = r[1].segments || [], ids = r[2];
        view(form + card(res.total + " profiles" + (q ? " matching “" + q + "” in interests or segment" : ""), table([{t: "person", html: 1, f: function (x) { return link(x.person_id); }}, {t: "user id", f: function (x) { return x.user_id || ""; }},
          {t: "segment", f: function (x) { return x.segment ? x.segment.label : ""; }},
          {t: "traits", f: function (x) { return Object.keys(x.traits || {}).map(function (k) { return k + " " + (+x.traits[k].score).toFixed(2); }).join(", "); }},
          {t: "last seen", f: function (x) { return when(x.last_seen); }}], res.profiles), "profiles") +
          (ids && ids.ready ? card(ids.people.length + " people whose id matches “" + q + "”", table([{t: "person", html: 1, f: function (x) { return link(x.person_id); }},
            {t: "sessions", n: 1, f: function (x) { return x.sessions; }}, {t: "page views", n: 1, f: function (x) { return x.page_views; }},
            {t: "last seen", f: function (x) { return when(x.last_seen); }}], ids.people), "ids") : ""));
        $("#segment").innerHTML = '<option value="">any segment</option>' + segs.map(function (s) { return '<option value="' + esc(s.id) + '"' + (String(s.id) === seg ? " selected" : "") + ">" + esc(s.label) + "</option>"; }).join("");
        $("#search").onsubmit = function (e) { e.preventDefault(); go(); };
      });
    }
    return api("/v1/dashboard/people?limit=50&q=" + encodeURIComponent(q)).then(function (d) {
      view(form + note("Profiles (traits, segments, interests) appear once the analyze stage has run; until then people are found in the sessions table.") +
        (d.ready ? card(d.people.length + " people", table([{t: "person", html: 1, f: function (x) { return link(x.person_id); }}, {t: "sessions", n: 1, f: function (x) { return x.sessions; }},
          {t: "page views", n: 1, f: function (x) { return x.page_views; }}, {t: "first seen", f: function (x) { return when(x.first_seen); }}, {t: "last seen", f: function (x) { return when(x.last_seen); }}], d.people)) : note(d.note)));
      $("#search").onsubmit = function (e) { e.preventDefault(); go(); };
    });
  }

  function person(id) {
    var calls = [api("/v1/dashboard/people/" + encodeURIComponent(id))];
    if (info.profiles_api) calls.push(api("/v1/profiles/" + encodeURIComponent(id)).catch(function (e) { if (e instanceof Unauthorized) throw e; return null; }));
    return Promise.all(calls).then(function (r) {
      var d = r[0], prof = r[1], out = '<p><a href="#people">← people</a></p><h1 class="pid">' + esc(id) + "</h1>";
      if (prof) {
        var traits = Object.keys(prof.traits || {}).map(function (k) { return {label: k, value: prof.traits[k].score, features: prof.traits[k].features}; });
        out += '<div class="kpis">' + kpi("segment", prof.segment ? prof.segment.label : "–") +
          kpi(prof.propensity ? "propensity: " + prof.propensity.goal + " in " + prof.propensity.days + " days" : "propensity", prof.propensity ? pct(prof.propensity.probability) : "not modelled yet") +
          kpi("first seen", when(prof.first_seen)) + kpi("last seen", when(prof.last_seen)) + "</div>" + '<div class="grid">' +
          card("Traits", charts.hbars(traits, {fmt: function (v) { return (+v).toFixed(2); }}) + table([{t: "trait", f: function (x) { return x.label; }},
            {t: "features behind it", f: function (x) { return Object.keys(x.features || {}).map(function (k) { return k + " = " + num(x.features[k]); }).join(", "); }}], traits)) +
          card("Interests", charts.hbars((prof.interests || []).map(function (i) { return {label: i.category, value: i.weight}; }), {fmt: function (v) { return (+v).toFixed(2); }})) +
          card("High-level events", charts.hbars(Object.keys(prof.high_level || {}).map(function (k) { return {label: k, value: prof.high_level[k]}; }), {color: "#e0752d", empty: "none"})) +
          "</div>" + card("Features", "<details><summary>" + Object.keys(prof.features || {}).length + " features the traits and segment are computed from</summary>" +
            table([{t: "feature", f: function (x) { return x[0]; }}, {t: "value", n: 1, f: function (x) { return num(x[1]); }}], Object.entries(prof.features || {})) + "</details>");
      } else {
        out += note(info.profiles_api ? "No profile for this person yet (the next analyze run makes one)." : "Profiles appear once the analyze stage has run.");
      }
      if (!d.ready) return view(out + note(d.note));
      out += '<div class="kpis">' + kpi("anonymous ids", d.anonymous_ids.length) + kpi("recent sessions", d.sessions.length) + "</div>";
      var t0 = Math.min.apply(null, d.sessions.map(function (s) { return s.start; })), t1 = Math.max.apply(null, d.sessions.map(function (s) { return s.end; }));
      out += card("Recent sessions", d.sessions.length ? d.sessions.map(function (s) {
        var left = t1 > t0 ? 100 * (s.start - t0) / (t1 - t0) : 0;
        return '<div class="session"><div><b>' + esc(when(s.start)) + "</b> · " + secs(s.duration_ms) + " · " + s.page_views + " pages · " + esc([s.device, s.browser].filter(Boolean).join(", ")) +
          (s.referrer_host ? " · from " + esc(s.referrer_host) : "") + (s.bounced ? ' · <span class="muted">bounced</span>' : "") + "</div>" +
          '<svg viewBox="0 0 600 8" preserveAspectRatio="none" style="height:8px"><rect x="0" y="3" width="600" height="2" fill="#eee"/><rect x="' + (left * 5.9).toFixed(1) + '" y="0" width="6" height="8" fill="#3d6fd8"/></svg>' +
          '<div class="chips">' + s.pages.map(function (p) { return "<span>" + esc(p.path) + (p.engaged_ms ? " · " + secs(p.engaged_ms) : "") + "</span>"; }).join("") + "</div></div>";
      }).join("<hr>") : "<p class=muted>no sessions</p>");
      out += card("High-level events", table([{t: "when", f: function (x) { return when(x.ts); }}, {t: "sequence", f: function (x) { return x.name; }}, {t: "source", f: function (x) { return x.source; }}], d.high_level));
      view(out);
    });
  }

  function segments() {
    if (!info.profiles_api) return Promise.resolve(view(note("Segments appear on a server that serves the profiles API (/v1/segments).")));
    return api("/v1/segments").then(function (d) {
      var segs = d.segments || [];
      if (!segs.length) return view(note("No segments yet: the analyze stage has not run on enough data."));
      view(card("Segment sizes", charts.hbars(segs.map(function (s) { return {label: s.label, value: s.size}; }), {labelWidth: 330, maxLabel: 60})) + '<div class="grid">' + segs.map(function (s) {
        return '<div class="card segment"><h2>' + esc(s.label) + ' <span class="muted">' + s.size + " people</span></h2>" +
          '<p class="muted">How this segment differs (bar: segment, grey: everyone)</p>' +
          charts.hbars((s.distinguishing || []).map(function (f) { return {label: f.feature, value: f.value, other: f.overall}; }), {compare: "everyone", fmt: function (v) { return num(v); }}) +
          '<p><a href="#people?segment=' + encodeURIComponent(s.id) + '">people in this segment →</a></p></div>';
      }).join("") + "</div>");
    });
  }

  function analyzeSummary(r) {
    var a = r.analyze;
    if (a == null) return "";
    if (typeof a === "string") return a;
    if (a.skipped) return "skipped: " + a.skipped;
    if (Array.isArray(a.tenants)) return a.tenants.map(function (t) {
      return t.tenant + ": " + (t.updated != null ? t.updated + " profiles updated" : "") + (t.segments ? ", " + t.segments + " segments" : "");
    }).join("; ");
    return JSON.stringify(a).slice(0, 120);
  }

  // Every node of the deployment, from its heartbeats; a tenant's key sees who is alive, not the
  // figures (they count every tenant's events).
  function nodeColumns(tenant) {
    var info = function (n) { return n.info || {}; };
    var cols = [{t: "node", f: function (n) { return n.node + (n.jobs_active || info(n).jobs_active ? " (active jobs)" : ""); }},
      {t: "role", f: function (n) { return n.role; }},
      {t: "last seen", n: 1, f: function (n) { return (n.age_ms / 1000).toFixed(1) + " s ago"; }}];
    if (tenant) return cols;
    return cols.concat([
      {t: "ingest", n: 1, f: function (n) { return info(n).ingest_events_per_sec == null ? "–" : info(n).ingest_events_per_sec + " /s"; }},
      {t: "spool", n: 1, f: function (n) { return bytes(info(n).spool_undelivered_bytes || 0) + " · " + (info(n).spool_segments || 0) + " seg"; }},
      {t: "delivery lag", n: 1, f: function (n) { return (info(n).delivery_lag_seconds || 0).toFixed(1) + " s"; }}]);
  }

  // A tenant's key sees its own figures (scope "tenant"); server.admin_key the whole server.
  function pipeline() {
    return api("/v1/dashboard/pipeline").then(function (d) {
      var tenant = d.scope === "tenant", c = d.counters, rate = "–";
      var accepted = function (p) { return tenant ? p.counters.beaconlake_tenant_events_accepted_total : p.counters.beaconlake_events_accepted_total; };
      if (lastPipeline && lastPipeline.scope === d.scope && d.now > lastPipeline.now) rate = ((accepted(d) - accepted(lastPipeline)) * 1000 / (d.now - lastPipeline.now)).toFixed(1) + " /s";
      lastPipeline = d;
      var s = d.schedule, last = d.runs[0];
      var kpis = tenant ? kpi("events rejected", num(c.beaconlake_tenant_events_rejected_total)) :
        kpi("events in the lake", num(c.beaconlake_events_delivered_total)) + kpi("spool, undelivered", bytes(d.spool_undelivered_bytes)) +
        kpi("delivery lag", d.delivery_lag_seconds.toFixed(1) + " s");
      var run = d.can_run ? '<button class="primary" id="run-now"' + (s.requested ? " disabled" : "") + ">" + (s.requested ? "Run requested…" : "Run now") + "</button>" :
        (s.requested ? "<p>A run is requested.</p>" : "") + note("A run now needs the tenant's admin key: sign in with it to run convert + analyze for this tenant.");
      view('<div class="kpis">' + kpi("ingest rate", rate) + kpi("events accepted", num(accepted(d))) + kpis +
        kpi("last run", last ? last.status + " · " + when(last.started_at) : "none yet") + "</div>" +
        card("Convert + analyze", "<p>" + (s.enabled ? "Every " + s.interval_mins + " min; next run " + (s.next_run_at ? when(s.next_run_at) : "when the scheduler starts") : "The interval is off ([schedule] enabled = false)") +
          ".</p>" + run) +
        card("Runs", table([{t: "started", f: function (r) { return when(r.started_at); }}, {t: "node", f: function (r) { return r.node || ""; }},
          {t: "trigger", f: function (r) { return r.trigger; }},
          {t: "status", html: 1, f: function (r) { return '<span class="status-' + esc(r.status) + '">' + esc(r.status) + (r.status === "running" ? " (" + esc(r.stage) + ")" : "") + "</span>"; }},
          {t: "duration", n: 1, f: function (r) { return r.seconds == null ? "" : r.seconds.toFixed(1) + " s"; }},
          {t: "events", n: 1, f: function (r) { return r.events == null ? "" : r.events; }}, {t: "new files", n: 1, f: function (r) { return r.new_files == null ? "" : r.new_files; }},
          {t: "analyze", f: analyzeSummary},
          {t: "error", html: 1, f: function (r) { return r.error ? '<pre class="error">' + esc(r.error) + "</pre>" : ""; }}], d.runs)) +
        // after the runs: the runs table stays the view's first
        (d.nodes && d.nodes.length ? card("Nodes (last heartbeat)", table(nodeColumns(tenant), d.nodes)) : "") +
        (d.quarantined && d.quarantined.length ? card("Quarantined raw files (convert could not read them; see docs/convert.md)", table([
          {t: "quarantined", f: function (q) { return when(q.quarantined_ms); }}, {t: "raw file", f: function (q) { return q.key; }},
          {t: "bytes", n: 1, f: function (q) { return q.size_bytes; }},
          {t: "reason", html: 1, f: function (q) { return '<pre class="error">' + esc(q.reason) + "</pre>"; }}], d.quarantined)) : "") +
        card("Rejected events by reason (since start-up)", charts.hbars(Object.keys(d.rejected).map(function (k) { return {label: k, value: d.rejected[k]}; }), {color: "#d23f3f", empty: "nothing rejected"})));
      if (d.can_run) $("#run-now").onclick = function () { this.disabled = true; api("/v1/dashboard/pipeline/run", {method: "POST"}).then(pipeline); };
    });
  }

  // -- routing and login ----------------------------------------------------------------------------

  var VIEWS = {live: [live, 5000], traffic: [traffic], sequences: [sequences], people: [people], segments: [segments], pipeline: [pipeline, 3000]};

  // An id in the location's hash, as link() wrote it with encodeURIComponent; a hash typed by
  // hand may hold a stray %, which stays as it is.
  function decodeId(text) {
    try { return decodeURIComponent(text); } catch (e) { return text; }
  }

  function route() {
    clearInterval(timer);
    var h = location.hash.slice(1) || "live", name = h.split(/[/?]/)[0];
    document.querySelectorAll("nav a").forEach(function (a) { a.classList.toggle("active", a.dataset.view === (name === "person" ? "people" : name)); });
    var run = name === "person" ? function () { return person(decodeId(h.slice(7))); } : (VIEWS[name] || VIEWS.live)[0];
    var every = name === "person" ? null : (VIEWS[name] || VIEWS.live)[1];
    $("#view").dataset.view = name;
    $("#view").dataset.loaded = "";
    var done = function () { $("#view").dataset.loaded = name; };
    var fail = function (e) { if (!(e instanceof Unauthorized)) view('<p class="error">' + esc(e.message) + "</p>"); };
    run().then(done, fail);
    if (every) timer = setInterval(function () { run().catch(fail); }, every);
  }

  function start() {
    return api("/v1/dashboard/session").then(function (d) {
      info = d;
      $("#login").hidden = true; $("#nav").hidden = false; $("#logout").hidden = false;
      $("#who").textContent = "tenant " + d.tenant + (d.role === "admin" ? " (admin)" : "");
      route();
    }, function (e) {
      if (!(e instanceof Unauthorized)) logout(e.message);  // e.g. a key that opens no tenant's dashboard
      throw e;
    });
  }

  function logout(message) {
    sessionStorage.removeItem(KEY); clearInterval(timer); info = null;
    $("#nav").hidden = true; $("#logout").hidden = true; $("#who").textContent = ""; view("");
    $("#login").hidden = false; $("#login-error").textContent = message || "";
  }

  $("#login").onsubmit = function (e) {
    e.preventDefault();
    sessionStorage.setItem(KEY, $("#key").value.trim());
    start().catch(function () {});
  };
  $("#logout").onclick = function () { logout(); };
  window.addEventListener("hashchange", function () { if (info) route(); });
  if (sessionStorage.getItem(KEY)) start().catch(function () {}); else logout();
})();
