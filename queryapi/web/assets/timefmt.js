// Times in the site's zone (the browser's own zone plays no part), and the
// number formats of the dashboard.

// Zone converts between instants (ms since the epoch) and a zone's wall
// clock.
export class Zone {
  constructor(tz) {
    this.tz = tz || 'UTC';
    const opts = {timeZone: this.tz, hourCycle: 'h23'};
    this.partsFmt = new Intl.DateTimeFormat('en-GB', {...opts, year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit'});
    this.hmFmt = new Intl.DateTimeFormat('en-GB', {...opts, hour: '2-digit', minute: '2-digit'});
    this.hmsFmt = new Intl.DateTimeFormat('en-GB', {...opts, hour: '2-digit', minute: '2-digit', second: '2-digit'});
    this.dayFmt = new Intl.DateTimeFormat('en-GB', {timeZone: this.tz, weekday: 'short', day: 'numeric', month: 'short'});
    this.shortDayFmt = new Intl.DateTimeFormat('en-GB', {timeZone: this.tz, weekday: 'short', day: 'numeric'});
  }

  // parts is the wall clock at ms: {y, mo, d, h, mi, s}.
  parts(ms) {
    const p = {};
    for (const {type, value} of this.partsFmt.formatToParts(new Date(ms))) p[type] = Number(value);
    return {y: p.year, mo: p.month, d: p.day, h: p.hour % 24, mi: p.minute, s: p.second};
  }

  // offset is the zone's offset from UTC at ms, in ms.
  offset(ms) {
    const p = this.parts(ms);
    return Date.UTC(p.y, p.mo - 1, p.d, p.h, p.mi, p.s) - Math.floor(ms / 1000) * 1000;
  }

  // wall is the instant of a wall-clock date and time (days may overflow:
  // d + 1 is the next day).
  wall(y, mo, d, h = 0, mi = 0) {
    const guess = Date.UTC(y, mo - 1, d, h, mi);
    let t = guess - this.offset(guess);
    t = guess - this.offset(t); // again, for a guess across a DST change
    return t;
  }

  // dayStart is the instant the local day holding ms began; addDays moves
  // a day start by n local days (23 or 25 hours across DST).
  dayStart(ms) {
    const p = this.parts(ms);
    return this.wall(p.y, p.mo, p.d);
  }
  addDays(dayStart, n) {
    const p = this.parts(dayStart);
    return this.wall(p.y, p.mo, p.d + n);
  }

  // ymd is the local date of ms as YYYY-MM-DD; fromYMD its day's start.
  ymd(ms) {
    const p = this.parts(ms);
    return `${p.y}-${pad(p.mo)}-${pad(p.d)}`;
  }
  fromYMD(s) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s || '');
    return m ? this.wall(Number(m[1]), Number(m[2]), Number(m[3])) : null;
  }

  hm(ms) {
    return this.hmFmt.format(new Date(ms));
  }
  hms(ms) {
    return this.hmsFmt.format(new Date(ms));
  }
  day(ms) {
    return this.dayFmt.format(new Date(ms));
  }
  shortDay(ms) {
    return this.shortDayFmt.format(new Date(ms));
  }
}

function pad(n) {
  return String(n).padStart(2, '0');
}

// iso is an instant as the API's UTC ISO 8601 argument, to the second.
export function iso(ms) {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

// parseTime reads a datetime of the record API ("2026-11-27 13:30:20.000",
// UTC); null stays null.
export function parseTime(v) {
  if (v === null || v === undefined) return null;
  return Date.parse(String(v).replace(' ', 'T') + 'Z');
}

// pct formats a ratio as a percentage with one decimal, rounding half
// up (Math.round); null or undefined is a dash.
export function pct(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return (Math.round(v * 1000) / 10).toFixed(1) + ' %';
}

// count formats a quantity with thousands separators.
export function count(v) {
  if (v === null || v === undefined) return '–';
  return Number(v).toLocaleString('en-US');
}

// minutes formats minutes with one decimal.
export function minutes(v) {
  if (v === null || v === undefined) return '–';
  return (Math.round(v * 10) / 10).toFixed(1);
}

// span formats a duration in ms as "2 h 05 min", "12 min" or "40 s".
export function span(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${pad(m % 60)} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}
