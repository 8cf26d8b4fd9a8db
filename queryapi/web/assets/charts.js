// The dashboard's charts, drawn as SVG elements (no markup strings): the
// production-period timeline, the downtime Pareto chart and the OEE
// trend. Colours come from the stylesheet's classes.

import {s} from './dom.js';
import {pct, span} from './timefmt.js';

export const STATES = {
  running: 'Running',
  down: 'Down',
  planned_down: 'Planned down',
  unscheduled: 'Unscheduled',
  none: 'No data',
};

// stateClass is the CSS class of a period state.
export function stateClass(state) {
  return 'st-' + (STATES[state] ? state : 'none');
}

// timeline draws one row per location: its periods between from and to
// (ms), coloured by state, each with a tooltip (state, times, reason);
// wide enough pieces show their reason. Time after now is shaded.
//   rows: [{label, periods: [{state, start, end, reason}]}] (end null: open)
export function timeline(rows, from, to, zone, now) {
  const W = 1200, labelW = 170, top = 26, rowH = 38, gap = 10;
  const plotW = W - labelW - 8;
  const H = top + Math.max(rows.length, 1) * (rowH + gap);
  const x = (t) => labelW + ((Math.min(Math.max(t, from), to) - from) / (to - from)) * plotW;
  const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart timeline', role: 'img',
    'aria-label': 'Production periods by location'});

  // Hour grid in the site's zone, labelled every two hours.
  for (let t = from, i = 0; t <= to; t += 3600e3, i++) {
    svg.append(s('line', {x1: x(t), x2: x(t), y1: top - 4, y2: H, class: 'grid'}));
    if (i % 2 === 0 && t < to) {
      svg.append(s('text', {x: x(t) + 3, y: top - 10, class: 'axis'}, zone.hm(t)));
    }
  }
  rows.forEach((row, i) => {
    const y = top + i * (rowH + gap);
    svg.append(s('text', {x: 0, y: y + rowH / 2 + 6, class: 'row-label'}, clip(row.label, 20), s('title', {}, row.label)));
    svg.append(s('rect', {x: labelW, y, width: plotW, height: rowH, class: 'st-none lane'}));
    for (const p of row.periods) {
      const end = p.end === null ? now : p.end;
      if (end <= from || p.start >= to) continue;
      const x1 = x(p.start), x2 = x(end);
      const w = Math.max(x2 - x1, 1);
      const label = STATES[p.state] || p.state;
      const tip = `${label} ${zone.hm(p.start)}–${p.end === null ? 'now' : zone.hm(p.end)} (${span(end - p.start)})` +
        (p.reason ? ` · ${p.reason}` : '');
      const g = s('g', {class: 'period'},
        s('rect', {x: x1, y, width: w, height: rowH, class: stateClass(p.state)}),
        s('title', {}, tip));
      if (p.reason && w > 70) {
        g.append(s('text', {x: x1 + 5, y: y + rowH / 2 + 5, class: 'in-bar'}, clip(p.reason, Math.floor(w / 8))));
      }
      svg.append(g);
    }
  });
  if (now > from && now < to) {
    svg.append(s('rect', {x: x(now), y: top, width: x(to) - x(now), height: H - top, class: 'future'}));
    svg.append(s('line', {x1: x(now), x2: x(now), y1: top - 4, y2: H, class: 'now'}));
  }
  return svg;
}

// pareto draws downtime by reason, largest first, with the cumulative
// share as a line.
//   items: [{label, seconds, planned}]
export function pareto(items) {
  const W = 560, H = 300, left = 46, right = 40, top = 24, bottom = 66;
  const plotW = W - left - right, plotH = H - top - bottom;
  const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart pareto', role: 'img',
    'aria-label': 'Downtime by reason'});
  const total = items.reduce((a, b) => a + b.seconds, 0);
  if (!items.length || total <= 0) {
    svg.append(s('text', {x: W / 2, y: H / 2, class: 'empty', 'text-anchor': 'middle'}, 'No downtime'));
    return svg;
  }
  const max = items[0].seconds;
  const bw = plotW / items.length;
  svg.append(s('line', {x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH, class: 'axis-line'}));
  let cum = 0;
  const points = [];
  items.forEach((it, i) => {
    const h = (it.seconds / max) * plotH;
    const x = left + i * bw + bw * 0.15;
    svg.append(s('g', {class: 'bar'},
      s('rect', {x, y: top + plotH - h, width: bw * 0.7, height: h, class: it.planned ? 'st-planned_down' : 'st-down'}),
      s('title', {}, `${it.title || it.label}: ${span(it.seconds * 1000)} (${pct(it.seconds / total)})`)));
    svg.append(s('text', {x: x + bw * 0.35, y: top + plotH - h - 5, class: 'value', 'text-anchor': 'middle'},
      Math.round(it.seconds / 60) + ' min'));
    const lines = wrap(it.label, Math.max(6, Math.floor(bw / 7.5)), 2);
    svg.append(s('text', {x: x + bw * 0.35, y: top + plotH + 16, class: 'axis', 'text-anchor': 'middle'},
      lines.map((l, j) => s('tspan', {x: x + bw * 0.35, dy: j ? 15 : 0}, l))));
    cum += it.seconds;
    points.push([x + bw * 0.35, top + plotH - (cum / total) * plotH]);
  });
  svg.append(s('polyline', {points: points.map((p) => p.join(',')).join(' '), class: 'cumulative'}));
  for (const [px, py] of points) svg.append(s('circle', {cx: px, cy: py, r: 3.5, class: 'cumulative-dot'}));
  for (const f of [0, 0.5, 1]) {
    svg.append(s('text', {x: left + plotW + 6, y: top + plotH - f * plotH + 4, class: 'axis'}, `${f * 100}%`));
  }
  svg.append(s('text', {x: left + plotW, y: 14, class: 'axis', 'text-anchor': 'end'}, `Total ${span(total * 1000)}`));
  return svg;
}

// trend draws the OEE of each day as a bar, with availability,
// performance and quality as lines.
//   days: [{start, label, oee, availability, performance, quality}]
export function trend(days) {
  const W = 560, H = 300, left = 40, right = 12, top = 24, bottom = 56;
  const plotW = W - left - right, plotH = H - top - bottom;
  const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart trend', role: 'img', 'aria-label': 'OEE by day'});
  const y = (v) => top + plotH - Math.min(Math.max(v || 0, 0), 1) * plotH;
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(s('line', {x1: left, x2: left + plotW, y1: y(f), y2: y(f), class: 'grid'}));
    svg.append(s('text', {x: left - 6, y: y(f) + 4, class: 'axis', 'text-anchor': 'end'}, `${f * 100}`));
  }
  const bw = plotW / Math.max(days.length, 1);
  const lines = {availability: [], performance: [], quality: []};
  days.forEach((d, i) => {
    const cx = left + i * bw + bw / 2;
    if (d.empty) {
      svg.append(s('text', {x: cx, y: top + plotH - 8, class: 'axis', 'text-anchor': 'middle'}, 'no data'));
    } else if (d.oee !== null && d.oee !== undefined) {
      svg.append(s('g', {class: 'bar'},
        s('rect', {x: cx - bw * 0.3, y: y(d.oee), width: bw * 0.6, height: top + plotH - y(d.oee), class: 'oee-bar'}),
        s('title', {}, `${d.title || d.label}: OEE ${pct(d.oee)}, availability ${pct(d.availability)}, ` +
          `performance ${pct(d.performance)}, quality ${pct(d.quality)}`)));
      const inside = top + plotH - y(d.oee) > 26;
      svg.append(s('text', {x: cx, y: inside ? y(d.oee) + 18 : y(d.oee) - 6, class: inside ? 'value in-bar' : 'value',
        'text-anchor': 'middle'}, pct(d.oee)));
    }
    svg.append(s('text', {x: cx, y: top + plotH + 18, class: 'axis', 'text-anchor': 'middle'}, d.label));
    for (const k of Object.keys(lines)) {
      if (!d.empty && d[k] !== null && d[k] !== undefined) lines[k].push([cx, y(d[k])]);
    }
  });
  let lx = left;
  for (const [k, pts] of Object.entries(lines)) {
    if (pts.length > 1) svg.append(s('polyline', {points: pts.map((p) => p.join(',')).join(' '), class: 'line-' + k}));
    for (const [px, py] of pts) svg.append(s('circle', {cx: px, cy: py, r: 3, class: 'dot-' + k}));
    svg.append(s('line', {x1: lx, x2: lx + 18, y1: H - 12, y2: H - 12, class: 'line-' + k}));
    svg.append(s('text', {x: lx + 22, y: H - 8, class: 'axis'}, k[0].toUpperCase() + k.slice(1)));
    lx += 130;
  }
  svg.append(s('rect', {x: lx, y: H - 18, width: 14, height: 12, class: 'oee-bar'}));
  svg.append(s('text', {x: lx + 20, y: H - 8, class: 'axis'}, 'OEE'));
  return svg;
}

// wrap breaks text into at most max lines of about n characters, at
// spaces; the last line is clipped.
function wrap(text, n, max) {
  const words = String(text).split(/\s+/);
  const lines = [];
  let cur = '';
  for (const w of words) {
    if (cur && (cur + ' ' + w).length > n) {
      lines.push(cur);
      cur = w;
    } else {
      cur = cur ? cur + ' ' + w : w;
    }
  }
  if (cur) lines.push(cur);
  if (lines.length > max) lines[max - 1] = lines.slice(max - 1).join(' ');
  return lines.slice(0, max).map((l) => clip(l, n));
}

function clip(text, n) {
  text = String(text);
  return text.length > n ? text.slice(0, Math.max(n - 1, 1)) + '…' : text;
}
