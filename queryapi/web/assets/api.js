// The dashboard's only way to the server: GET requests to the public
// record API and OEE endpoint, with the key in the L2LAUTH header. Live
// updates come from poll() and from changes(), the live change feed of
// production periods.

export class AuthError extends Error {}
export class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The API's largest page.
const PAGE = 2000;

export class API {
  constructor(key) {
    this.key = key;
  }

  // get answers the envelope of GET /api/1.0/<path>?<params>; it throws
  // AuthError on 401 and APIError on any other failure (HTTP or
  // success=false).
  async get(path, params) {
    const u = new URL('../api/1.0/' + path, window.location.href);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null) u.searchParams.set(k, String(v));
    }
    let resp;
    try {
      resp = await fetch(u, {
        headers: {L2LAUTH: this.key, Accept: 'application/json'},
        cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
      });
    } catch (e) {
      throw new APIError(0, 'The server does not answer');
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      // Not JSON: reported below with the status.
    }
    if (resp.status === 401) throw new AuthError((body && body.error) || 'Invalid API key');
    if (!resp.ok || !body || !body.success) {
      throw new APIError(resp.status, (body && body.error) || 'HTTP ' + resp.status);
    }
    return body;
  }

  // list reads up to maxPages pages of a record area; truncated says
  // whether more rows were left.
  async list(area, params, maxPages = 5) {
    const rows = [];
    for (let page = 0; page < maxPages; page++) {
      const body = await this.get(area + '/', {...params, limit: PAGE, offset: page * PAGE});
      rows.push(...body.data);
      if (body.data.length < PAGE) return {rows, truncated: false};
    }
    return {rows, truncated: true};
  }

  // oee answers the rows of GET /api/1.0/oee/.
  async oee(params) {
    return (await this.get('oee/', params)).data;
  }
}

// poll runs fn now and then every ms, start to start; a run that takes
// longer delays the next (runs never overlap). now() asks for a run soon:
// at once, or after the one running, but never sooner than SOON_MS after
// the last one started, so a burst of changes costs one run per SOON_MS.
// stop() ends it. fn gets no arguments and may throw: onError gets what
// it threw.
const SOON_MS = 500;

export function poll(fn, ms, onError) {
  let timer = null;
  let stopped = false;
  let running = false;
  let again = false;
  let started = 0;
  const schedule = (delay) => {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(run, Math.max(0, delay));
  };
  const run = async () => {
    timer = null;
    running = true;
    again = false;
    started = Date.now();
    try {
      await fn();
    } catch (e) {
      if (!stopped) onError(e);
    }
    running = false;
    if (!stopped) schedule((again ? SOON_MS : ms) - (Date.now() - started));
  };
  run();
  return {
    now() {
      if (stopped) return;
      if (running) {
        again = true;
        return;
      }
      schedule(SOON_MS - (Date.now() - started));
    },
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}

// changes follows the live change feed of production periods
// (GET /api/1.0/productionperiods/stream/, Server-Sent Events) with the
// key in the L2LAUTH header, which EventSource cannot send. onEvent gets
// each period change (the feed's JSON) and onReady each (re)connection;
// a lost or dropped stream is resumed from the last event id after 2 s, so
// no change is missed; a refused one (e.g. the key's streams are all in
// use) is tried again after 30 s, the poll keeping the page current
// meanwhile. stop() ends it.
export function changes(api, params, onEvent, onReady) {
  let stopped = false;
  let ctrl = null;
  let last = '';
  const run = async () => {
    while (!stopped) {
      ctrl = new AbortController();
      let opened = false;
      try {
        const u = new URL('../api/1.0/productionperiods/stream/', window.location.href);
        for (const [k, v] of Object.entries(params || {})) u.searchParams.set(k, String(v));
        const headers = {L2LAUTH: api.key, Accept: 'text/event-stream'};
        if (last) headers['Last-Event-ID'] = last;
        const resp = await fetch(u, {headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer', signal: ctrl.signal});
        if (!resp.ok || !(resp.headers.get('Content-Type') || '').startsWith('text/event-stream')) {
          throw new Error('HTTP ' + resp.status);
        }
        opened = true;
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        let ev = {id: '', name: '', data: ''};
        for (;;) {
          const {value, done} = await reader.read();
          if (done) break;
          buf += value;
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (line === '') {
              if (ev.id) last = ev.id;
              if (ev.name === 'ready') onReady();
              if (ev.name === 'period') onEvent(JSON.parse(ev.data));
              ev = {id: '', name: '', data: ''};
            } else if (line.startsWith('id: ')) {
              ev.id = line.slice(4);
            } else if (line.startsWith('event: ')) {
              ev.name = line.slice(7);
            } else if (line.startsWith('data: ')) {
              ev.data = line.slice(6);
            }
          }
        }
      } catch (e) {
        // Reconnected below; the poll keeps the page current meanwhile.
      }
      if (!stopped) await new Promise((r) => setTimeout(r, opened ? 2000 : 30000));
    }
  };
  run();
  return {
    stop() {
      stopped = true;
      if (ctrl) ctrl.abort();
    },
  };
}
