/* Hand-made SVG charts: no dependencies, nothing fetched, so the dashboard works offline.
   Each function returns SVG markup; every label goes through esc(). */
"use strict";
var charts = (function () {
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function num(v) {
    if (v == null) return "–";
    if (typeof v !== "number") return String(v);
    if (isNaN(v)) return "–";
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return Math.round(v * 100) / 100 + "";
  }
  // A "nice" upper bound for an axis, so gridlines land on round numbers.
  function nice(max) {
    if (!(max > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(max))), m = max / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  // never drawn wider than its own size, so labels keep their size in wide cards
  function open(w, h) { return '<svg viewBox="0 0 ' + w + " " + h + '" style="max-width:' + w + 'px" role="img">'; }
  function empty(h, text) {
    return open(600, h) + '<text x="300" y="' + h / 2 + '" text-anchor="middle">' + esc(text || "no data in this range") + "</text></svg>";
  }

  /* Stacked columns over time. buckets: [{x: ms, values: {key: n}}]; keys: [{key, color, label}]. */
  function stacked(buckets, keys, opt) {
    opt = opt || {};
    var W = opt.width || 640, H = opt.height || 200, L = 40, B = 22, T = 8;
    if (!buckets.length) return empty(H, opt.empty);
    var totals = buckets.map(function (b) { return keys.reduce(function (s, k) { return s + (b.values[k.key] || 0); }, 0); });
    var top = nice(Math.max.apply(null, totals)), n = buckets.length, bw = (W - L - 4) / n;
    var out = [open(W, H)];
    for (var g = 0; g <= 4; g++) {
      var y = T + (H - B - T) * (1 - g / 4);
      out.push('<line x1="' + L + '" x2="' + W + '" y1="' + y + '" y2="' + y + '" stroke="#eee"/><text x="' + (L - 4) + '" y="' + (y + 4) + '" text-anchor="end">' + num(top * g / 4) + "</text>");
    }
    buckets.forEach(function (b, i) {
      var x = L + i * bw, y = H - B;
      keys.forEach(function (k) {
        var v = b.values[k.key] || 0, h = (H - B - T) * v / top;
        if (v > 0) out.push('<rect x="' + (x + 0.5).toFixed(1) + '" y="' + (y - h).toFixed(1) + '" width="' + Math.max(1, bw - 1).toFixed(1) + '" height="' + h.toFixed(1) + '" fill="' + k.color + '"><title>' + esc(opt.xfmt ? opt.xfmt(b.x) : b.x) + " " + esc(k.label || k.key) + ": " + v + "</title></rect>");
        y -= h;
      });
      if (i % Math.ceil(n / 6) === 0) out.push('<text x="' + (x + bw / 2) + '" y="' + (H - 6) + '" text-anchor="middle">' + esc(opt.xfmt ? opt.xfmt(b.x) : b.x) + "</text>");
    });
    out.push("</svg>");
    return out.join("");
  }

  /* A line per series. series: [{label, color, points: [[x, y]]}]. */
  function lines(series, opt) {
    opt = opt || {};
    var W = 640, H = opt.height || 200, L = 44, B = 22, T = 8;
    var pts = [].concat.apply([], series.map(function (s) { return s.points; }));
    if (!pts.length) return empty(H, opt.empty);
    var xs = pts.map(function (p) { return p[0]; }), x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var top = opt.max || nice(Math.max.apply(null, pts.map(function (p) { return p[1]; })));
    var X = function (x) { return L + (W - L - 36) * (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5); };  // room for the last label
    var Y = function (y) { return T + (H - B - T) * (1 - y / top); };
    var out = [open(W, H)];
    for (var g = 0; g <= 4; g++) {
      out.push('<line x1="' + L + '" x2="' + W + '" y1="' + Y(top * g / 4) + '" y2="' + Y(top * g / 4) + '" stroke="#eee"/><text x="' + (L - 4) + '" y="' + (Y(top * g / 4) + 4) + '" text-anchor="end">' + (opt.yfmt ? opt.yfmt(top * g / 4) : num(top * g / 4)) + "</text>");
    }
    var ticks = Array.from(new Set(xs)).sort(function (a, b) { return a - b; });
    ticks.forEach(function (x, i) {
      if (i % Math.ceil(ticks.length / 6) === 0) out.push('<text x="' + X(x) + '" y="' + (H - 6) + '" text-anchor="middle">' + esc(opt.xfmt ? opt.xfmt(x) : x) + "</text>");
    });
    series.forEach(function (s) {
      if (!s.points.length) return;
      var d = s.points.map(function (p, i) { return (i ? "L" : "M") + X(p[0]).toFixed(1) + " " + Y(p[1]).toFixed(1); }).join(" ");
      out.push('<path d="' + d + '" fill="none" stroke="' + s.color + '" stroke-width="2"/>');
      s.points.forEach(function (p) {
        out.push('<circle cx="' + X(p[0]).toFixed(1) + '" cy="' + Y(p[1]).toFixed(1) + '" r="2.5" fill="' + s.color + '"><title>' + esc(s.label) + " " + esc(opt.xfmt ? opt.xfmt(p[0]) : p[0]) + ": " + esc(opt.yfmt ? opt.yfmt(p[1]) : num(p[1])) + "</title></circle>");
      });
    });
    out.push("</svg>");
    return out.join("");
  }

  /* Horizontal bars. rows: [{label, value, note?}]; opt.compare: a second value per row (row.other), drawn thin. */
  function hbars(rows, opt) {
    opt = opt || {};
    var W = 640, rowH = opt.compare ? 30 : 22, LW = opt.labelWidth || 180, H = rows.length * rowH + 6;
    if (!rows.length) return empty(60, opt.empty);
    var top = Math.max.apply(null, rows.map(function (r) { return Math.max(Math.abs(r.value || 0), Math.abs(r.other || 0)); })) || 1;
    var fmt = opt.fmt || num, bw = W - LW - (rows.some(function (r) { return r.note; }) ? 150 : 70);  // room for the value and its note
    var out = [open(W, H)];
    rows.forEach(function (r, i) {
      var y = 3 + i * rowH, w = bw * Math.abs(r.value || 0) / top;
      out.push('<text class="lbl" x="' + (LW - 6) + '" y="' + (y + 13) + '" text-anchor="end">' + esc(String(r.label).slice(0, opt.maxLabel || 32)) + "</text>");
      out.push('<rect x="' + LW + '" y="' + (y + 2) + '" width="' + Math.max(w, 1).toFixed(1) + '" height="14" rx="2" fill="' + (r.color || opt.color || "#3d6fd8") + '"><title>' + esc(r.label) + ": " + esc(fmt(r.value)) + "</title></rect>");
      out.push('<text x="' + (LW + w + 5) + '" y="' + (y + 13) + '">' + esc(fmt(r.value)) + (r.note ? " · " + esc(r.note) : "") + "</text>");
      if (opt.compare && r.other != null) {
        var w2 = bw * Math.abs(r.other) / top;
        out.push('<rect x="' + LW + '" y="' + (y + 19) + '" width="' + Math.max(w2, 1).toFixed(1) + '" height="6" rx="1" fill="#b8bfcc"><title>' + esc(opt.compare) + ": " + esc(fmt(r.other)) + "</title></rect>");
      }
    });
    out.push("</svg>");
    return out.join("");
  }

  /* A funnel: one bar per step, width = people reaching it, with conversion and drop-off. */
  function funnel(steps) {
    var W = 640, rowH = 40, LW = 190, H = steps.length * rowH + 6;
    if (!steps.length || !steps[0].people) return empty(60, "nobody started this sequence in the range");
    var top = steps[0].people, bw = W - LW - 150;
    var out = [open(W, H)];
    steps.forEach(function (s, i) {
      var y = 3 + i * rowH, w = bw * s.people / top, x = LW + (bw - w) / 2;
      out.push('<text class="lbl" x="' + (LW - 8) + '" y="' + (y + 16) + '" text-anchor="end">' + esc(s.step + ". " + s.name) + "</text>");
      if (s.where && s.where.length) out.push('<text x="' + (LW - 8) + '" y="' + (y + 30) + '" text-anchor="end">' + esc(s.where.join(", ").slice(0, 34)) + "</text>");
      out.push('<rect class="step" data-people="' + s.people + '" x="' + x.toFixed(1) + '" y="' + (y + 3) + '" width="' + Math.max(w, 1).toFixed(1) + '" height="28" rx="3" fill="#3d6fd8" opacity="' + (1 - i * 0.1) + '"/>');
      out.push('<text x="' + (LW + bw + 8) + '" y="' + (y + 16) + '" class="lbl">' + s.people + " people</text>");
      out.push('<text x="' + (LW + bw + 8) + '" y="' + (y + 30) + '">' + (s.conversion == null ? "" : (s.conversion * 100).toFixed(1) + "%") + (s.drop_off ? " · −" + s.drop_off : "") + "</text>");
    });
    out.push("</svg>");
    return out.join("");
  }

  function legend(keys) {
    return '<div class="legend">' + keys.map(function (k) { return '<span><i style="background:' + k.color + '"></i>' + esc(k.label || k.key) + "</span>"; }).join("") + "</div>";
  }

  return {esc: esc, num: num, stacked: stacked, lines: lines, hbars: hbars, funnel: funnel, legend: legend};
})();
