// The dashboard's only way to the server: GET requests to the public
// record API and OEE endpoint, with the key in the L2LAUTH header. Live
// updates come from poll(); a change feed can replace it behind the same
// start/stop shape without touching the views.

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
// longer delays the next (runs never overlap). stop() ends it. fn gets no
// arguments and may throw: onError gets what it threw.
export function poll(fn, ms, onError) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    timer = null;
    const started = Date.now();
    try {
      await fn();
    } catch (e) {
      if (!stopped) onError(e);
    }
    if (!stopped) timer = setTimeout(run, Math.max(0, ms - (Date.now() - started)));
  };
  run();
  return {
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}
