// The OEE dashboard: a site overview (every line and machine: current
// state and since when, today's availability, performance, quality and
// OEE, parts in the last hour) and a line view (a day's production
// periods, hourly pitches, downtime by reason, the last 7 days' OEE).
// Everything comes from the public API with the user's key; times are in
// the site's zone. The address (#site=1&line=2&day=2026-11-27) says what
// is shown, so a wall display can be pointed at one view.

import {API, AuthError, poll, changes} from './api.js';
import {h, s, replace} from './dom.js';
import {Zone, iso, parseTime, pct, count, minutes, span} from './timefmt.js';
import {STATES, stateClass, timeline, pareto, trend} from './charts.js';

const KEY = 'takt.dashboard.key';
// Live updates: a refresh starts every 3 s (or when the previous one
// ended, if it took longer), so a part shows within 5 s of its
// acknowledgement: the pipeline makes it visible in about half a second
// and a refresh takes tens of milliseconds. Every 5 s could not promise
// that (5 s plus the pipeline plus the refresh).
// A period change (a line going down, a reason given) comes from the live
// change feed and refreshes the view at once.
const REFRESH_MS = 3000;
const MASTER_MS = 60000; // lines, machines and reasons are re-read this often

const $ = (id) => document.getElementById(id);
// gen counts the views shown: a refresh that ends after its view was left
// draws nothing.
const app = {api: null, sites: [], site: null, zone: null, master: null, masterAt: 0, poller: null, feed: null, clock: null, gen: 0};

// ---------------------------------------------------------------- start

function start() {
  // A key given as ?auth= (like the API's argument) is kept, then taken
  // out of the address so it is not left in history or on screen.
  const url = new URL(window.location.href);
  const given = url.searchParams.get('auth');
  if (given) {
    localStorage.setItem(KEY, given);
    url.searchParams.delete('auth');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  $('signout').addEventListener('click', signOut);
  $('home').addEventListener('click', (e) => {
    e.preventDefault();
    if (app.site) go({site: app.site.id});
  });
  $('site-select').addEventListener('change', (e) => go({site: e.target.value}));
  window.addEventListener('hashchange', () => show());
  const key = localStorage.getItem(KEY);
  if (key) signIn(key);
  else login('');
}

function login(message) {
  stop();
  app.api = null;
  $('signout').hidden = true;
  $('site-select').hidden = true;
  replace($('site-name'));
  replace($('status'));
  const form = $('login-template').content.firstElementChild.cloneNode(true);
  replace($('main'), form);
  $('main').dataset.view = 'login';
  replace($('login-error'), message);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('key').value.trim();
    if (key) signIn(key);
  });
  $('key').focus();
}

async function signIn(key) {
  const api = new API(key);
  let sites;
  try {
    sites = (await api.list('sites', {fields: 'id,description,timezone', order_by: 'id'}, 1)).rows;
  } catch (e) {
    if (e instanceof AuthError) {
      localStorage.removeItem(KEY);
      login(e.message);
    } else {
      login('The server could not be asked: ' + e.message);
    }
    return;
  }
  localStorage.setItem(KEY, key);
  app.api = api;
  app.sites = sites;
  $('signout').hidden = false;
  const sel = $('site-select');
  replace(sel, sites.map((s) => h('option', {value: s.id}, s.description || `Site ${s.id}`)));
  sel.hidden = sites.length < 2;
  $('site-name').hidden = sites.length > 1;
  show();
}

function signOut() {
  localStorage.removeItem(KEY);
  login('Signed out.');
}

// ---------------------------------------------------------------- routing

function route() {
  const p = new URLSearchParams(window.location.hash.slice(1));
  return {site: Number(p.get('site')) || null, line: Number(p.get('line')) || null, day: p.get('day')};
}

function go(r) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(r)) if (v) p.set(k, v);
  window.location.hash = p.toString();
}

function link(r) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(r)) if (v) p.set(k, v);
  return '#' + p.toString();
}

function show() {
  if (!app.api) return;
  stop();
  const r = route();
  if (!app.sites.length) {
    replace($('main'), h('p', {class: 'empty'}, 'This key sees no site.'));
    return;
  }
  const site = app.sites.find((s) => s.id === r.site) || app.sites[0];
  if (!app.site || app.site.id !== site.id) {
    app.site = site;
    app.zone = new Zone(site.timezone);
    app.master = null;
  }
  $('site-select').value = String(site.id);
  replace($('site-name'), site.description || `Site ${site.id}`);
  startClock();
  const view = r.line ? () => lineView(r.line, r.day) : overview;
  $('main').dataset.view = r.line ? 'line' : 'overview';
  const gen = ++app.gen;
  app.poller = poll(async () => {
    const node = await view();
    if (gen !== app.gen) return;
    replace($('main'), node);
    ok();
  }, REFRESH_MS, (e) => {
    if (gen === app.gen) failed(e);
  });
  const params = r.line ? {site: site.id, line: r.line} : {site: site.id};
  app.feed = changes(app.api, params, () => {
    if (gen === app.gen && app.poller) app.poller.now();
  }, () => {
    $('main').dataset.feed = 'live';
  });
}

function stop() {
  app.gen++;
  if (app.poller) app.poller.stop();
  app.poller = null;
  if (app.feed) app.feed.stop();
  app.feed = null;
  delete $('main').dataset.feed;
}

function startClock() {
  if (app.clock) clearInterval(app.clock);
  const tick = () => replace($('clock'), app.zone.hms(Date.now()), h('small', {}, ' ' + app.zone.tz));
  tick();
  app.clock = setInterval(tick, 1000);
}

function ok() {
  const now = Date.now();
  $('main').dataset.updated = String(now);
  $('banner').hidden = true;
  replace($('status'), h('span', {class: 'dot ok'}), 'Updated ' + app.zone.hms(now));
}

function failed(e) {
  if (e instanceof AuthError) {
    localStorage.removeItem(KEY);
    login(e.message);
    return;
  }
  replace($('status'), h('span', {class: 'dot bad'}), 'Not updated');
  replace($('banner'), 'Update failed: ' + e.message + ' (retrying)');
  $('banner').hidden = false;
}

// ---------------------------------------------------------------- data

// master reads the site's lines, machines and reasons (again after
// MASTER_MS).
async function master() {
  const now = Date.now();
  if (app.master && now - app.masterAt < MASTER_MS) return app.master;
  const site = app.site.id;
  const [lines, machines, reasons] = await Promise.all([
    app.api.list('lines', {site, fields: 'id,code,description,externalid', order_by: 'code'}),
    app.api.list('machines', {site, fields: 'id,line,code,description,externalid', order_by: 'code'}),
    app.api.list('reasons', {site, fields: 'id,code,description,kind,planned'}),
  ]);
  const m = {lines: lines.rows, machines: machines.rows, reasons: new Map()};
  for (const r of reasons.rows) m.reasons.set(r.id, r);
  app.master = m;
  app.masterAt = now;
  return m;
}

function reasonLabel(m, id) {
  if (id === null || id === undefined) return '';
  const r = m.reasons.get(id);
  if (!r) return `Reason ${id}`;
  return r.description ? `${r.code} · ${r.description}` : r.code;
}

// locationsOf are the line's locations: the line itself when it reports
// parts (it then stands for its machines in OEE sums), and its machines
// that have an external id.
function locationsOf(m, line) {
  const out = [];
  if (line.externalid) out.push({kind: 'line', id: line.id, label: line.description || line.code, code: line.code});
  for (const mc of m.machines) {
    if (mc.line === line.id && mc.externalid) {
      out.push({kind: 'machine', id: mc.id, label: mc.description || mc.code, code: mc.code});
    }
  }
  return out;
}

const key = (kind, id) => `${kind}:${id}`;

// partsMade is every part an OEE row saw: counted, outside the shifts,
// and too late to change a period.
function partsMade(row) {
  if (!row) return 0;
  return (row.produced_quantity || 0) + (row.unscheduled_quantity || 0) + (row.late_quantity || 0);
}

// ---------------------------------------------------------------- overview

async function overview() {
  const m = await master();
  const site = app.site.id;
  const now = Math.floor(Date.now() / 1000) * 1000;
  const today = app.zone.dayStart(now);
  const hourAgo = now - 3600e3;
  const day = {site, start: iso(today), end: iso(now)};
  const hour = {site, start: iso(hourAgo), end: iso(now)};
  const hasLocations = m.lines.some((l) => locationsOf(m, l).length > 0);
  const none = Promise.resolve([]);
  const [dayLoc, dayLine, hourLoc, hourLine, open] = await Promise.all([
    hasLocations ? app.api.oee({...day, group_by: 'location'}) : none,
    hasLocations ? app.api.oee({...day, group_by: 'line'}) : none,
    hasLocations ? app.api.oee({...hour, group_by: 'location'}) : none,
    hasLocations ? app.api.oee({...hour, group_by: 'line'}) : none,
    app.api.list('productionperiods', {site, end__isnull: 'True', fields: 'location,location_kind,state,start,reason'}),
  ]);
  const byLoc = (rows) => new Map(rows.map((r) => [key(r.location_kind, r.location), r]));
  const byLine = (rows) => new Map(rows.filter((r) => r.line !== null).map((r) => [r.line, r]));
  const d = {dayLoc: byLoc(dayLoc), dayLine: byLine(dayLine), hourLoc: byLoc(hourLoc), hourLine: byLine(hourLine),
    open: new Map(open.rows.map((p) => [key(p.location_kind, p.location), p])), now};
  const windows = {'data-day-start': day.start, 'data-day-end': day.end, 'data-hour-start': hour.start,
    'data-hour-end': hour.end};

  const cards = m.lines.map((line) => lineCard(m, line, d, windows));
  const loose = m.machines.filter((mc) => mc.externalid && !m.lines.some((l) => l.id === mc.line));
  return (
    h('section', {class: 'overview', ...windows},
      h('div', {class: 'legend'}, legend(), h('span', {class: 'note'},
        `Today since ${app.zone.hm(today)} · parts in the last hour since ${app.zone.hm(hourAgo)}`)),
      cards.length ? h('div', {class: 'cards'}, cards) : h('p', {class: 'empty'}, 'No lines at this site yet.'),
      loose.length ? h('p', {class: 'note'}, `${loose.length} machine(s) belong to no line of this site.`) : null));
}

function legend() {
  return h('span', {class: 'states'}, Object.entries(STATES).map(([k, v]) =>
    h('span', {class: 'key'}, h('span', {class: 'swatch bg-' + stateClass(k)}), v)));
}

function lineCard(m, line, d, windows) {
  const locs = locationsOf(m, line);
  const own = locs.find((l) => l.kind === 'line');
  const machines = locs.filter((l) => l.kind === 'machine');
  let st;
  if (own) {
    st = current(d.open.get(key('line', line.id)), d.now, m);
  } else {
    st = summary(machines.map((l) => d.open.get(key(l.kind, l.id))), d.now);
  }
  const today = d.dayLine.get(line.id);
  const hour = d.hourLine.get(line.id);
  return h('article', {class: 'card border-' + stateClass(st.state), 'data-line': line.id, ...windows},
    h('a', {class: 'card-head', href: link({site: app.site.id, line: line.id})},
      h('h2', {}, line.description || line.code), h('span', {class: 'code'}, line.code), h('span', {class: 'open'}, '›')),
    h('div', {class: 'state-row'},
      h('span', {class: 'badge bg-' + stateClass(st.state), 'data-state': st.state}, st.label),
      h('span', {class: 'since'}, st.since)),
    h('div', {class: 'reason'}, st.reason || ' '),
    h('div', {class: 'kpis'},
      kpi('OEE today', 'oee', today && today.oee, 'main'),
      h('div', {class: 'meters'},
        meter('Availability', 'availability', today && today.availability),
        meter('Performance', 'performance', today && today.performance),
        meter('Quality', 'quality', today && today.quality))),
    h('div', {class: 'parts'}, h('span', {class: 'label'}, 'Parts in the last hour'),
      h('span', {class: 'value', 'data-figure': 'parts-hour'}, locs.length ? count(partsMade(hour)) : '–')),
    machines.length ? h('table', {class: 'machines'},
      h('thead', {}, h('tr', {}, h('th', {}, 'Machine'), h('th', {}, 'State'),
        h('th', {class: 'num'}, 'OEE'), h('th', {class: 'num'}, 'Parts/h'))),
      h('tbody', {}, machines.map((l) => machineRow(m, l, d)))) : null,
    locs.length ? null : h('p', {class: 'note'}, 'No location of this line has an external id yet.'));
}

function machineRow(m, l, d) {
  const st = current(d.open.get(key(l.kind, l.id)), d.now, m);
  const today = d.dayLoc.get(key(l.kind, l.id));
  const hour = d.hourLoc.get(key(l.kind, l.id));
  return h('tr', {'data-location': key(l.kind, l.id)},
    h('td', {class: 'name'}, l.label, h('div', {class: 'code'}, l.code)),
    h('td', {}, h('span', {class: 'pill bg-' + stateClass(st.state), 'data-state': st.state}, st.label),
      h('span', {class: 'sub'}, ' ' + st.sinceShort),
      st.reason ? h('div', {class: 'small-reason'}, st.reason) : null),
    h('td', {class: 'num', 'data-figure': 'oee'}, pct(today && today.oee)),
    h('td', {class: 'num', 'data-figure': 'parts-hour'}, count(partsMade(hour))));
}

// meter is a labelled ratio with a bar (SVG: the policy allows no inline
// style).
function meter(label, name, v) {
  const w = v === null || v === undefined ? 0 : Math.min(Math.max(v, 0), 1) * 100;
  return h('div', {class: 'meter ' + level(v)},
    h('span', {class: 'label'}, label),
    s('svg', {viewBox: '0 0 100 10', preserveAspectRatio: 'none', class: 'bar', 'aria-hidden': 'true'},
      s('rect', {width: 100, height: 10, class: 'track'}), s('rect', {width: w, height: 10, class: 'fill'})),
    h('span', {class: 'value', 'data-figure': name}, pct(v)));
}

function kpi(label, name, v, extra) {
  return h('div', {class: 'kpi ' + (extra || '') + ' ' + level(v)},
    h('span', {class: 'label'}, label), h('span', {class: 'value', 'data-figure': name}, pct(v)));
}

// level classes a ratio for colour: the usual OEE bands.
function level(v) {
  if (v === null || v === undefined) return 'lvl-none';
  if (v >= 0.85) return 'lvl-good';
  if (v >= 0.6) return 'lvl-fair';
  return 'lvl-poor';
}

// current describes a location's open period.
function current(p, now, m) {
  if (!p) return {state: 'none', label: STATES.none, since: '', sinceShort: '', reason: ''};
  const start = parseTime(p.start);
  return {
    state: p.state,
    label: STATES[p.state] || p.state,
    since: `since ${app.zone.hm(start)} · ${span(now - start)}`,
    sinceShort: `${app.zone.hm(start)} · ${span(now - start)}`,
    reason: reasonLabel(m, p.reason),
  };
}

// summary describes a line without its own location by its machines:
// the most pressing state among them, and how many are in it.
function summary(periods, now) {
  const order = ['down', 'planned_down', 'running', 'unscheduled'];
  const known = periods.filter(Boolean);
  for (const state of order) {
    const n = known.filter((p) => p.state === state).length;
    if (n) return {state, label: STATES[state], since: `${n} of ${periods.length} machines`, sinceShort: '', reason: ''};
  }
  return {state: 'none', label: STATES.none, since: '', sinceShort: '', reason: ''};
}

// ---------------------------------------------------------------- line view

async function lineView(lineID, dayArg) {
  const m = await master();
  const line = m.lines.find((l) => l.id === lineID);
  if (!line) {
    return h('p', {class: 'empty'}, 'No such line at this site. ', h('a', {href: link({site: app.site.id})}, 'All lines'));
  }
  const z = app.zone;
  const now = Math.floor(Date.now() / 1000) * 1000;
  const today = z.dayStart(now);
  let from = z.fromYMD(dayArg);
  if (from === null || from > today) from = today;
  const to = z.addDays(from, 1);
  const end = Math.min(to, now);
  const site = app.site.id;
  const locs = locationsOf(m, line);
  const own = locs.find((l) => l.kind === 'line');
  const none = Promise.resolve([]);

  const periodsOf = async (l) => {
    const base = {location: l.id, location_kind: l.kind, start__lt: iso(to), fields: 'state,start,end,reason', order_by: 'start'};
    const [closed, open] = await Promise.all([
      app.api.list('productionperiods', {...base, end__gt: iso(from)}),
      app.api.list('productionperiods', {...base, end__isnull: 'True'}, 1),
    ]);
    return closed.rows.concat(open.rows).map((p) => ({state: p.state, start: parseTime(p.start), end: parseTime(p.end),
      reason: reasonLabel(m, p.reason), reasonID: p.reason}));
  };
  const [dayRows, trendRows, pitches, ...periods] = await Promise.all([
    locs.length ? app.api.oee({site, line: line.id, start: iso(from), end: iso(end)}) : none,
    locs.length ? app.api.oee({site, line: line.id, start: iso(z.addDays(from, -6)), end: iso(end), bucket: 'day'}) : none,
    app.api.list('pitches', {line: line.id, pitch_start__gte: iso(from), pitch_start__lt: iso(to), order_by: 'pitch_start',
      fields: 'machine,pitch_start,planned_production_minutes,running_minutes,down_minutes,planned_down_minutes,actual,good,scrap,rework,ideal_minutes'}),
    ...locs.map(periodsOf),
  ]);
  const dayRow = dayRows[0];

  // Downtime by reason, from the locations the line's OEE sums: the line
  // itself when it reports, else its machines.
  const counted = own ? [locs.indexOf(own)] : locs.map((_, i) => i);
  const downtime = new Map();
  for (const i of counted) {
    for (const p of periods[i]) {
      if (p.state !== 'down' && p.state !== 'planned_down') continue;
      const secs = (Math.min(p.end === null ? now : p.end, end) - Math.max(p.start, from)) / 1000;
      if (secs <= 0) continue;
      const k = (p.reasonID === null ? 'none' : p.reasonID) + ':' + p.state;
      const r = m.reasons.get(p.reasonID);
      const it = downtime.get(k) || {label: r ? r.description || r.code : 'No reason given', title: p.reason || 'No reason given',
        seconds: 0, planned: p.state === 'planned_down'};
      it.seconds += secs;
      downtime.set(k, it);
    }
  }
  let items = [...downtime.values()].sort((a, b) => b.seconds - a.seconds);
  if (items.length > 8) {
    const rest = items.slice(7).reduce((a, b) => a + b.seconds, 0);
    items = items.slice(0, 7).concat([{label: 'Other', title: 'Other reasons', seconds: rest, planned: false}]);
  }

  // A day no period covers (coverage 0: before the line reported) has no
  // figures, not figures of 0.
  const days = trendRows.map((r) => ({start: parseTime(r.start), label: z.shortDay(parseTime(r.start)),
    title: z.day(parseTime(r.start)), empty: !r.coverage, oee: r.oee, availability: r.availability,
    performance: r.performance, quality: r.quality}));
  const isToday = from === today;
  const title = line.description || line.code;
  return (
    h('section', {class: 'line-view', 'data-line': line.id, 'data-day-start': iso(from), 'data-day-end': iso(end)},
      h('div', {class: 'line-head'},
        h('a', {class: 'back', href: link({site})}, '‹ All lines'),
        h('h1', {}, title, h('span', {class: 'code'}, ' ' + line.code)),
        h('nav', {class: 'day-nav'},
          h('a', {href: link({site, line: line.id, day: z.ymd(z.addDays(from, -1))}), title: 'Previous day'}, '‹'),
          h('span', {class: 'day'}, z.day(from) + (isToday ? ' (today)' : '')),
          isToday ? h('span', {class: 'disabled'}, '›') :
            h('a', {href: link({site, line: line.id, day: z.ymd(to)}), title: 'Next day'}, '›'),
          isToday ? null : h('a', {href: link({site, line: line.id})}, 'Today'))),
      h('div', {class: 'kpis wide'},
        kpi('OEE', 'oee', dayRow && dayRow.oee, 'main'),
        kpi('Availability', 'availability', dayRow && dayRow.availability),
        kpi('Performance', 'performance', dayRow && dayRow.performance),
        kpi('Quality', 'quality', dayRow && dayRow.quality),
        stat('Produced', 'produced', dayRow && count(dayRow.produced_quantity)),
        stat('Scrap', 'scrap', dayRow && count(dayRow.scrap_quantity)),
        stat('Down time', 'down', dayRow && dayRow.unplanned_down_time !== null ? span(dayRow.unplanned_down_time * 1000) : '–'),
        stat('Stops', 'stops', dayRow && dayRow.down_events !== null ? count(dayRow.down_events) : '–')),
      h('section', {class: 'panel'},
        h('h2', {}, 'Production periods', h('span', {class: 'legend'}, legend())),
        locs.length ? timeline(locs.map((l, i) => ({label: l.label, periods: periods[i]})), from, to, z, now) :
          h('p', {class: 'empty'}, 'No location of this line has an external id yet.')),
      h('div', {class: 'two'},
        h('section', {class: 'panel'}, h('h2', {}, 'Top downtime reasons'), pareto(items)),
        h('section', {class: 'panel'}, h('h2', {}, 'OEE, last 7 days'), trend(days))),
      h('section', {class: 'panel'}, h('h2', {}, 'Hour by hour'), pitchTable(pitches.rows, !!own, z))));
}

function stat(label, name, text) {
  return h('div', {class: 'kpi stat'}, h('span', {class: 'label'}, label),
    h('span', {class: 'value', 'data-figure': name}, text || '–'));
}

// pitchTable shows the line's hourly pitches: its own when it reports
// parts, else its machines' summed hour by hour (elements summed, then
// divided).
function pitchTable(rows, own, z) {
  const hours = new Map();
  for (const r of rows) {
    if (own ? r.machine !== null : false) continue;
    const t = parseTime(r.pitch_start);
    const a = hours.get(t) || {t, planned: 0, run: 0, down: 0, pdown: 0, actual: 0, good: 0, scrap: 0, rework: 0, ideal: 0};
    a.planned += r.planned_production_minutes;
    a.run += r.running_minutes;
    a.down += r.down_minutes;
    a.pdown += r.planned_down_minutes;
    a.actual += r.actual;
    a.good += r.good;
    a.scrap += r.scrap;
    a.rework += r.rework;
    a.ideal += r.ideal_minutes;
    hours.set(t, a);
  }
  const list = [...hours.values()].sort((a, b) => a.t - b.t);
  if (!list.length) return h('p', {class: 'empty'}, 'No production this day.');
  const ratio = (n, d) => (d > 0 ? n / d : 0);
  return h('table', {class: 'pitches'},
    h('thead', {}, h('tr', {}, ['Hour', 'Planned min', 'Running min', 'Down min', 'Planned down min', 'Parts', 'Good', 'Scrap',
      'Availability', 'Performance', 'Quality', 'OEE'].map((t, i) => h('th', {class: i ? 'num' : ''}, t)))),
    h('tbody', {}, list.map((a) => {
      const av = ratio(a.run, a.run + a.down);
      const pf = ratio(a.ideal, a.run);
      const q = ratio(a.good, a.actual);
      const oee = av * pf * q;
      return h('tr', {},
        h('td', {}, `${z.hm(a.t)}–${z.hm(a.t + 3600e3)}`),
        h('td', {class: 'num'}, minutes(a.planned)), h('td', {class: 'num'}, minutes(a.run)),
        h('td', {class: 'num' + (a.down > 0 ? ' warn' : '')}, minutes(a.down)), h('td', {class: 'num'}, minutes(a.pdown)),
        h('td', {class: 'num'}, count(a.actual)), h('td', {class: 'num'}, count(a.good)),
        h('td', {class: 'num' + (a.scrap > 0 ? ' warn' : '')}, count(a.scrap)),
        h('td', {class: 'num'}, pct(av)), h('td', {class: 'num'}, pct(pf)), h('td', {class: 'num'}, pct(q)),
        h('td', {class: 'num strong ' + level(oee)}, pct(oee)));
    })));
}

start();
