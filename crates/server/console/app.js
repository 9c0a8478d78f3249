// The console's one script: the sign-in form, and each page of the console, run against the
// server's own APIs (the session cookie stands in for the admin key; no key is kept in the page).
'use strict';

const $ = (selector, root = document) => root.querySelector(selector);

/** Builds an element; children are nodes or text (never parsed as HTML). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A JSON request to the server; throws with the server's `error` sentence. */
async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: 'same-origin',
    ...options,
    headers: { 'content-type': 'application/json', ...(options.headers || {}) },
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function wsUrl(path) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`;
}

function say(text) {
  const status = $('#status');
  if (status) status.textContent = text;
}

// ---- sign-in

function signInPage() {
  const form = $('#signin');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    $('#signin-error').textContent = '';
    try {
      await api('/console/session', { method: 'POST', body: JSON.stringify({ key: $('#key').value }) });
      location.reload();
    } catch (error) {
      $('#signin-error').textContent = error.message;
      $('#key').select();
    }
  });
}

// ---- the console: one page at a time, chosen by the URL's hash (#page/argument)

const pages = { overview: overviewPage, counter: counterPage, display: displayPage, rooms: roomsPage, devices: devicesPage, kiosk: kioskPage };
let leave = () => {};

function route() {
  const [name, ...rest] = location.hash.replace(/^#/, '').split('/');
  const page = pages[name] ? name : 'overview';
  for (const link of document.querySelectorAll('nav a')) {
    if (link.getAttribute('href') === `#${page}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  leave();
  const main = $('#page');
  main.replaceChildren();
  say('');
  leave = pages[page](main, decodeURIComponent(rest.join('/'))) || (() => {});
}

function consolePage() {
  $('#signout').addEventListener('click', async () => {
    await api('/console/session', { method: 'DELETE' }).catch(() => {});
    location.reload();
  });
  window.addEventListener('hashchange', route);
  route();
}

/** Runs `tick` now and every `ms`; returns the function that stops it. */
function every(ms, tick) {
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    try {
      await tick();
    } catch (error) {
      say(error.message);
    }
    if (!stopped) timer = setTimeout(run, ms);
  };
  let timer = setTimeout(run, 0);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** A socket that reopens after a second when it drops, until it is closed here. `onText` gets
 * each text frame and a way to answer; `onState` hears it open (true) and drop (false). */
function reopeningSocket(path, onText, onState = () => {}) {
  let socket;
  let closed = false;
  let retry;
  const send = (text) => socket.readyState === WebSocket.OPEN && socket.send(text);
  const open = () => {
    socket = new WebSocket(wsUrl(path));
    socket.onopen = () => onState(true);
    socket.onmessage = (event) => onText(String(event.data), send);
    socket.onclose = () => {
      onState(false);
      if (!closed) retry = setTimeout(open, 1000);
    };
  };
  open();
  return {
    send,
    close: () => {
      closed = true;
      clearTimeout(retry);
      socket.close();
    },
  };
}

/** A reopening socket of JSON frames. */
function liveSocket(path, onMessage, onState) {
  return reopeningSocket(path, (text) => {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (_) {
      frame = { text };
    }
    onMessage(frame);
  }, onState);
}

// ---- overview

/** Prometheus text → { "name{labels}": value }. */
function parseMetrics(text) {
  const values = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return values;
}

function sum(values, prefix) {
  return Object.entries(values || {})
    .filter(([key]) => key === prefix || key.startsWith(`${prefix}{`))
    .reduce((total, [, value]) => total + value, 0);
}

function sparkline(samples) {
  const width = 120;
  const height = 30;
  const max = Math.max(1, ...samples);
  const points = samples.map((v, i) => `${(i / Math.max(1, samples.length - 1)) * width},${height - (v / max) * height}`);
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('aria-hidden', 'true');
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', points.join(' '));
  svg.append(line);
  return svg;
}

/** What the overview shows, each from the previous and the current metrics, per second. */
const GAUGES = [
  ['websocket', 'WebSocket connections', (m) => sum(m, 'switchboard_connections_open')],
  ['socketio', 'Socket.IO sessions', (m) => sum(m, 'switchboard_adopted_connections_open{protocol="socket.io"}')],
  ['awake', 'Objects awake', (m) => sum(m, 'switchboard_objects_live')],
  ['hibernated', 'Objects hibernated', (m) => sum(m, 'switchboard_objects_hibernated')],
  ['topics', 'Topics', (m) => sum(m, 'switchboard_topics')],
  ['frames-in', 'Frames in / s', (m, p, s) => rate(m, p, s, 'switchboard_frames_in_total')],
  ['frames-out', 'Frames out / s', (m, p, s) => rate(m, p, s, 'switchboard_frames_out_total')],
  ['commits', 'Storage commits / s', (m, p, s) => rate(m, p, s, 'switchboard_storage_commits_total')],
  ['commit-ms', 'Commit time, fsync included (ms, mean)', (m, p) => {
    const count = sum(m, 'switchboard_storage_commit_seconds_count') - sum(p, 'switchboard_storage_commit_seconds_count');
    const total = sum(m, 'switchboard_storage_commit_seconds_sum') - sum(p, 'switchboard_storage_commit_seconds_sum');
    return count > 0 ? Math.round((total / count) * 10000) / 10 : 0;
  }],
  ['outbox', 'Outbox depth', (m) => sum(m, 'switchboard_outbox_depth')],
  ['slow', 'Slow-consumer closes', (m) => sum(m, 'switchboard_slow_consumer_closes_total')],
];

function rate(now, before, seconds, name) {
  if (!before || seconds <= 0) return 0;
  return Math.round(((sum(now, name) - sum(before, name)) / seconds) * 10) / 10;
}

function overviewPage(main) {
  const history = Object.fromEntries(GAUGES.map(([id]) => [id, []]));
  const cards = el('div', { class: 'cards' });
  const topics = el('tbody');
  const objectResult = el('div', { id: 'object-result', 'aria-live': 'polite' });
  main.append(
    el('h1', {}, 'Overview'),
    cards,
    el('h2', {}, 'Topics'),
    el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Topic'), el('th', {}, 'Subscribers'), el('th', {}, 'Users'), el('th', {}, 'History'))), topics),
    el('h2', {}, 'An object'),
    el('form', { class: 'inline', id: 'object-form', onsubmit: async (event) => {
      event.preventDefault();
      const form = event.target;
      try {
        const detail = await api(`/console/api/objects/${encodeURIComponent(form.class.value)}/${encodeURIComponent(form.name.value)}`);
        objectResult.replaceChildren(objectDetail(detail));
      } catch (error) {
        objectResult.replaceChildren(el('p', { class: 'error' }, error.message));
      }
    } },
    el('div', {}, el('label', { for: 'object-class' }, 'Class'), el('input', { id: 'object-class', name: 'class', value: 'counter', required: true })),
    el('div', {}, el('label', { for: 'object-name' }, 'Name'), el('input', { id: 'object-name', name: 'name', required: true })),
    el('button', { type: 'submit' }, 'Look up')),
    objectResult,
  );
  let previous = null;
  let previousAt = 0;
  const stopMetrics = every(1000, async () => {
    const response = await fetch('/metrics', { credentials: 'same-origin' });
    const now = parseMetrics(await response.text());
    const at = performance.now();
    const seconds = (at - previousAt) / 1000;
    cards.replaceChildren(...GAUGES.map(([id, label, measure]) => {
      const value = measure(now, previous, seconds);
      const samples = history[id];
      samples.push(value);
      if (samples.length > 120) samples.shift();
      return el('div', { class: 'card', 'data-metric': id },
        el('div', { class: 'label' }, label),
        el('div', { class: 'value' }, value.toLocaleString()),
        sparkline(samples));
    }));
    previous = now;
    previousAt = at;
  });
  const stopTopics = every(2000, async () => {
    const { topics: list } = await api('/console/api/topics');
    topics.replaceChildren(...list.map((t) => el('tr', {},
      el('td', {}, t.name),
      el('td', {}, t.subscribers),
      el('td', {}, t.users.join(', ')),
      el('td', {}, t.history ? `${t.history.entries} kept, offset ${t.history.offset}` : '—'))));
    if (!list.length) topics.append(el('tr', {}, el('td', { colspan: 4 }, 'No topics yet.')));
  });
  return () => {
    stopMetrics();
    stopTopics();
  };
}

/** An object as `/console/api/objects/…` describes it. */
function objectDetail(d) {
  return el('div', { class: 'object' },
    el('p', {}, `${d.class} “${d.name}” on node ${d.owner}: ${d.awake ? 'awake' : 'not in memory'}; alarm ${d.alarm ? new Date(d.alarm).toISOString() : 'none'}; outbox ${d.outbox.depth} waiting`),
    el('h3', {}, `Sockets (${d.sockets.length})`),
    d.sockets.length
      ? el('table', {}, el('thead', {}, el('tr', {}, ['Socket', 'Tags', 'Topics', 'Attachment'].map((h) => el('th', {}, h)))),
        el('tbody', {}, d.sockets.map((s) => el('tr', {}, el('td', {}, s.id), el('td', {}, s.tags.join(', ') || '—'), el('td', {}, s.topics.join(', ') || '—'), el('td', {}, `${s.attachmentBytes} bytes`)))))
      : el('p', { class: 'hint' }, 'No sockets.'),
    el('h3', {}, `Stored keys (${d.keys.length}${d.moreKeys ? '+' : ''})`),
    d.keys.length ? el('ul', { id: 'object-keys' }, d.keys.map((k) => el('li', {}, el('code', {}, k)))) : el('p', { class: 'hint' }, 'Nothing stored.'));
}

// ---- counter (the live counter seed's two-tab demo: open it twice and watch both)

function counterPage(main, name) {
  if (!name) {
    main.append(el('h1', {}, 'Counter'), el('form', { class: 'inline', onsubmit: (event) => {
      event.preventDefault();
      location.hash = `#counter/${encodeURIComponent(event.target.name.value)}`;
    } }, el('div', {}, el('label', { for: 'counter-name' }, 'Counter name'), el('input', { id: 'counter-name', name: 'name', value: 'demo', required: true })),
    el('button', { type: 'submit' }, 'Open')));
    return null;
  }
  const value = el('div', { class: 'big', id: 'counter-value', 'aria-live': 'polite' }, '…');
  // Replies and broadcasts may arrive in either order: show a value only if it is newer than
  // the one shown (by the counter's operation count).
  let shownCount = -1;
  const show = (reply) => {
    const count = reply.metadata ? reply.metadata.operationCount : -1;
    if (count >= shownCount) {
      shownCount = count;
      value.textContent = reply.value;
    }
  };
  const state = el('p', { class: 'hint', id: 'counter-state' }, 'connecting');
  const op = (operation, extra = {}) => async () => {
    try {
      show(await api(`/rpc/counter.${operation}`, { method: 'POST', body: JSON.stringify({ name, ...extra }) }));
    } catch (error) {
      say(error.message);
    }
  };
  main.append(
    el('h1', {}, `Counter “${name}”`),
    value,
    state,
    el('div', { class: 'inline' },
      el('button', { type: 'button', id: 'counter-increment', onclick: op('increment') }, '+1'),
      ' ',
      el('button', { type: 'button', id: 'counter-decrement', onclick: op('decrement') }, '−1'),
      ' ',
      el('button', { type: 'button', class: 'secondary', id: 'counter-reset', onclick: op('reset') }, 'Reset')),
    el('p', {}, el('a', { href: `#counter/${encodeURIComponent(name)}`, target: '_blank', rel: 'noopener' }, 'Open this counter in another tab'),
      ' — both show every change as it is stored.'),
  );
  api('/rpc/counter.getValue', { method: 'POST', body: JSON.stringify({ name }) })
    .then((reply) => { if (shownCount < 0) value.textContent = reply.value; })
    .catch((error) => say(error.message));
  const socket = liveSocket(`/ws/counter/${encodeURIComponent(name)}`, (update) => {
    if (typeof update.value === 'number') show(update);
  }, (open) => { state.textContent = open ? 'live' : 'reconnecting'; });
  return () => socket.close();
}

// ---- display (the restaurant display seed: transcriptions, dish cards, menus, the order)

function renderUpdate(update) {
  switch (update.type) {
    case 'dish_card':
      return el('span', { class: 'dish' }, el('strong', {}, update.name || update.dish || 'Dish'), update.price ? ` · ${update.price}` : '', update.description ? el('div', {}, update.description) : null);
    case 'menu':
      return el('div', {}, el('strong', {}, update.title || 'Menu'), el('ul', {}, (update.items || []).map((item) => el('li', {}, typeof item === 'string' ? item : item.name || JSON.stringify(item)))));
    default:
      return el('pre', {}, JSON.stringify(update, null, 2));
  }
}

function displayPage(main, id) {
  if (!id) {
    main.append(el('h1', {}, 'Display'), el('form', { class: 'inline', onsubmit: (event) => {
      event.preventDefault();
      location.hash = `#display/${encodeURIComponent(event.target.session.value)}`;
    } }, el('div', {}, el('label', { for: 'display-session' }, 'Session id'), el('input', { id: 'display-session', name: 'session', value: 'table-7', required: true })),
    el('button', { type: 'submit' }, 'Open')));
    return null;
  }
  const transcriptions = el('ul', { class: 'feed', id: 'display-transcriptions' });
  const updates = el('div', { id: 'display-updates' });
  const order = el('pre', { id: 'display-order' }, 'No order yet.');
  const state = el('p', { class: 'hint' }, 'connecting');
  const show = (update) => {
    if (update.type === 'transcription') transcriptions.append(el('li', {}, update.text || JSON.stringify(update)));
    else if (update.type === 'order_summary') order.textContent = JSON.stringify(update, null, 2);
    else updates.append(renderUpdate(update));
  };
  const base = `/session/${encodeURIComponent(id)}`;
  main.append(
    el('h1', {}, `Display “${id}”`), state,
    el('h2', {}, 'Transcription'), transcriptions,
    el('h2', {}, 'On screen'), updates,
    el('h2', {}, 'Order'), order,
    el('h2', {}, 'Send an update'),
    el('form', { id: 'display-send', onsubmit: async (event) => {
      event.preventDefault();
      const form = event.target;
      try {
        if (form.init.checked) await api(`${base}/init`, { method: 'POST', body: JSON.stringify({ tenantId: form.tenant.value }) });
        await api(`${base}/update`, { method: 'POST', body: form.update.value });
        say('sent');
      } catch (error) {
        say(error.message);
      }
    } },
    el('label', {}, el('input', { type: 'checkbox', name: 'init' }), ' Initialise the session first, for tenant ', el('input', { name: 'tenant', value: 'demo', 'aria-label': 'Tenant id' })),
    el('label', { for: 'display-update' }, 'Update (JSON)'),
    el('textarea', { id: 'display-update', name: 'update', rows: 4, cols: 60 }, '{"type":"transcription","text":"Two soups, please"}'),
    el('div', {}, el('button', { type: 'submit' }, 'Send'))),
  );
  const socket = liveSocket(`${base}/display`, (frame) => {
    if (frame.type === 'initial_state') {
      transcriptions.replaceChildren();
      updates.replaceChildren();
      order.textContent = frame.state.currentOrder ? JSON.stringify(frame.state.currentOrder, null, 2) : 'No order yet.';
      (frame.state.transcriptions || []).forEach((t) => show({ type: 'transcription', ...t }));
      (frame.state.displayUpdates || []).forEach(show);
    } else if (frame.type === 'update') {
      show(frame.update);
    }
  }, (open) => { state.textContent = open ? 'live' : 'reconnecting'; });
  return () => socket.close();
}

// ---- rooms (the factory dashboards' connections, their rooms, and publishing an event)

function roomsPage(main) {
  const rows = el('tbody', { id: 'rooms-connections' });
  const result = el('p', { class: 'hint', id: 'rooms-result', 'aria-live': 'polite' });
  main.append(
    el('h1', {}, 'Rooms'),
    el('h2', {}, 'Connections'),
    el('table', {}, el('thead', {}, el('tr', {}, ['Connection', 'User', 'Branch', 'Role', 'Connected', 'Rooms', ''].map((h) => el('th', {}, h)))), rows),
    el('h2', {}, 'Publish an event'),
    el('form', { id: 'rooms-publish', onsubmit: async (event) => {
      event.preventDefault();
      const form = event.target;
      try {
        const reply = await api('/api/broadcast', { method: 'POST', body: JSON.stringify({
          type: form.type.value,
          rooms: form.rooms.value.split(',').map((r) => r.trim()).filter(Boolean),
          data: form.data.value ? JSON.parse(form.data.value) : {},
        }) });
        result.textContent = `delivered to ${reply.delivered} connection(s)`;
      } catch (error) {
        result.textContent = error.message;
      }
    } },
    el('label', { for: 'rooms-type' }, 'Type'), el('input', { id: 'rooms-type', name: 'type', value: 'order:status_changed', required: true }),
    el('label', { for: 'rooms-rooms' }, 'Rooms (comma-separated)'), el('input', { id: 'rooms-rooms', name: 'rooms', value: 'branch:b1', required: true }),
    el('label', { for: 'rooms-data' }, 'Data (JSON)'), el('textarea', { id: 'rooms-data', name: 'data', rows: 3, cols: 60 }, '{"orderId":"67890","newStatus":"cutting"}'),
    el('div', {}, el('button', { type: 'submit' }, 'Publish'))),
    result,
  );
  return every(2000, async () => {
    const { connections } = await api('/api/connections');
    rows.replaceChildren(...connections.map((c) => el('tr', {},
      el('td', {}, c.connectionId), el('td', {}, c.userId), el('td', {}, c.branchId || '—'), el('td', {}, c.role || '—'),
      el('td', {}, c.connectedAt), el('td', {}, c.rooms.join(', ')),
      el('td', {}, el('button', { type: 'button', class: 'secondary', onclick: async () => {
        await api(`/api/connections/${encodeURIComponent(c.connectionId)}`, { method: 'DELETE' }).catch((e) => say(e.message));
      } }, 'Disconnect')))));
    if (!connections.length) rows.append(el('tr', {}, el('td', { colspan: 7 }, 'No connections.')));
  });
}

// ---- devices (the RFID gateway's dashboard: readers online and offline, the live scan feed,
// config pushed to a reader, tags offered for registration)

function devicesPage(main) {
  const rows = el('tbody', { id: 'devices-rows' });
  const feed = el('ul', { class: 'feed', id: 'devices-feed', 'aria-live': 'polite' });
  const pending = el('ul', { class: 'feed', id: 'devices-pending' });
  const result = el('p', { class: 'hint', id: 'devices-result', 'aria-live': 'polite' });
  const refresh = async () => {
    const devices = await api('/api/devices');
    rows.replaceChildren(...devices.map((d) => el('tr', {},
      el('td', {}, d.deviceId), el('td', {}, d.status),
      el('td', {}, d.lastSeen ? new Date(d.lastSeen).toISOString() : '—'),
      el('td', {}, `${d.configAppliedVersion ?? 0} / ${d.configVersion ?? 0}`),
      el('td', {}, d.outbox ? `${d.outbox.depth}` : '0'))));
    if (!devices.length) rows.append(el('tr', {}, el('td', { colspan: 5 }, 'No device has connected yet.')));
  };
  const assign = (tagId) => el('form', { class: 'inline', onsubmit: async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      await api('/api/tags', { method: 'POST', body: JSON.stringify({ tagId, userId: form.user.value, name: form.person.value }) });
      form.closest('li').remove();
      result.textContent = `tag ${tagId} assigned`;
    } catch (error) {
      result.textContent = error.message;
    }
  } },
  el('div', {}, el('label', { for: `user-${tagId}` }, 'User id'), el('input', { id: `user-${tagId}`, name: 'user', required: true })),
  el('div', {}, el('label', { for: `person-${tagId}` }, 'Name'), el('input', { id: `person-${tagId}`, name: 'person', required: true })),
  el('button', { type: 'submit' }, 'Assign'));
  main.append(
    el('h1', {}, 'Devices'),
    el('table', {}, el('thead', {}, el('tr', {}, ['Device', 'Status', 'Last seen', 'Config applied / latest', 'Outbox'].map((h) => el('th', {}, h)))), rows),
    el('h2', {}, 'Live scans'), feed,
    el('h2', {}, 'Tags waiting for registration'), pending,
    el('h2', {}, 'Push a config'),
    el('form', { id: 'devices-config', onsubmit: async (event) => {
      event.preventDefault();
      const form = event.target;
      try {
        const reply = await api(`/api/devices/${encodeURIComponent(form.device.value)}/config`, { method: 'POST', body: form.config.value });
        result.textContent = `config version ${reply.version} for ${reply.deviceId}`;
      } catch (error) {
        result.textContent = error.message;
      }
    } },
    el('label', { for: 'devices-device' }, 'Device id'), el('input', { id: 'devices-device', name: 'device', required: true }),
    el('label', { for: 'devices-json' }, 'Config (JSON)'), el('textarea', { id: 'devices-json', name: 'config', rows: 3, cols: 60 }, '{"registrationMode":true}'),
    el('div', {}, el('button', { type: 'submit' }, 'Push'))),
    result,
  );
  const socket = liveSocket('/ws/dashboard', (event) => {
    if (event.type === 'scan') {
      const who = event.user ? ` — ${event.user.name || event.user.userId || ''}` : '';
      feed.prepend(el('li', {}, `${event.scan.deviceId}: ${event.scan.tagId} (${event.scan.status})${who} at ${new Date(event.scan.timestamp).toISOString()}`));
      while (feed.children.length > 50) feed.lastChild.remove();
    } else if (event.type === 'tag_pending_registration') {
      pending.append(el('li', {}, `${event.tagId} seen by ${event.deviceId}`, assign(event.tagId)));
    } else if (event.type === 'device_status') {
      refresh().catch((error) => say(error.message));
    }
  }, (open) => say(open ? '' : 'reconnecting to the live feed'));
  const stop = every(5000, refresh);
  return () => {
    stop();
    socket.close();
  };
}

// ---- kiosk (the NFC kiosk's page: registration with its progress, the LED strip, a simulated
// tag). It speaks Socket.IO (Engine.IO 4 over a WebSocket) like the kiosk's own page does.

function socketIo(onEvent, onState) {
  const socket = reopeningSocket('/socket.io/?EIO=4&transport=websocket', (raw, send) => {
    if (raw.startsWith('0')) send('40');
    else if (raw === '2') send('3');
    else if (raw.startsWith('40')) onState(true);
    else if (raw.startsWith('42')) {
      const [name, payload] = JSON.parse(raw.slice(2));
      onEvent(name, payload && payload.data !== undefined ? payload.data : payload);
    }
  }, (open) => { if (!open) onState(false); });
  return {
    emit: (name, data) => socket.send(`42${JSON.stringify([name, { timestamp: new Date().toISOString(), data }])}`),
    close: socket.close,
  };
}

function kioskPage(main) {
  const status = el('pre', { id: 'kiosk-status' }, 'connecting');
  const led = el('div', { id: 'kiosk-led', class: 'card', role: 'img', 'aria-label': 'LED strip: unknown' }, 'LED strip');
  const progress = el('progress', { id: 'kiosk-progress', max: 100, value: 0, 'aria-label': 'Registration progress' });
  const log = el('ul', { class: 'feed', id: 'kiosk-log', 'aria-live': 'polite' });
  const note = (text) => {
    log.prepend(el('li', {}, text));
    while (log.children.length > 30) log.lastChild.remove();
  };
  const showLed = (state) => {
    const color = state && state.color ? state.color : 'transparent';
    led.style.background = color;
    // Dark text on a light strip, light text on a dark one: readable whatever the colour.
    const rgb = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
    const light = rgb ? 0.299 * parseInt(rgb[1], 16) + 0.587 * parseInt(rgb[2], 16) + 0.114 * parseInt(rgb[3], 16) > 140 : true;
    led.style.color = light ? '#111' : '#fff';
    led.textContent = `LED strip: ${state ? state.pattern : 'off'} ${state && state.color ? state.color : ''}`;
    led.setAttribute('aria-label', led.textContent);
  };
  const io = socketIo((name, data) => {
    switch (name) {
      case 'status':
        status.textContent = JSON.stringify(data, null, 2);
        if (data && data.led) showLed(data.led);
        break;
      case 'led_state': showLed(data); break;
      case 'tag_write_progress': progress.value = data.progress; break;
      case 'awaiting_tag': progress.value = 0; note(`waiting for a tag for ${data.entry_id} (${data.timeout} s)`); break;
      case 'tag_registered': progress.value = 100; note(`${data.tag_uid} registered to ${data.entry_id}`); break;
      case 'nfc_tag_scanned': note(`scanned ${data.tag_uid}${data.registered ? ` (entry ${data.entry_id})` : ' (not registered)'}`); break;
      case 'error': note(`error: ${data.message} (${data.code})`); break;
      default: note(`${name}: ${JSON.stringify(data)}`);
    }
  }, (open) => say(open ? '' : 'reconnecting to the kiosk'));
  main.append(
    el('h1', {}, 'Kiosk'),
    el('h2', {}, 'Status'), status, led,
    el('h2', {}, 'Register a tag'),
    el('form', { class: 'inline', id: 'kiosk-register', onsubmit: (event) => {
      event.preventDefault();
      io.emit('register_tag_start', { entry_id: event.target.entry.value, timeout: Number(event.target.timeout.value) });
    } },
    el('div', {}, el('label', { for: 'kiosk-entry' }, 'Entry id'), el('input', { id: 'kiosk-entry', name: 'entry', value: 'entry-1', required: true })),
    el('div', {}, el('label', { for: 'kiosk-timeout' }, 'Timeout (s)'), el('input', { id: 'kiosk-timeout', name: 'timeout', type: 'number', min: 1, value: 30 })),
    el('button', { type: 'submit' }, 'Start'),
    el('button', { type: 'button', class: 'secondary', onclick: () => io.emit('register_tag_cancel', {}) }, 'Cancel')),
    progress,
    el('h2', {}, 'Simulate a tag'),
    el('form', { class: 'inline', id: 'kiosk-simulate', onsubmit: async (event) => {
      event.preventDefault();
      try {
        const reply = await api('/api/nfc/simulate', { method: 'POST', body: JSON.stringify({ uid: event.target.uid.value }) });
        note(reply.accepted ? 'tag presented' : `tag ignored: ${reply.reason}`);
      } catch (error) {
        note(error.message);
      }
    } },
    el('div', {}, el('label', { for: 'kiosk-uid' }, 'Tag uid'), el('input', { id: 'kiosk-uid', name: 'uid', value: '04:11:5D:22:2C:65:80', required: true })),
    el('button', { type: 'submit' }, 'Present')),
    el('h2', {}, 'Events'), log,
  );
  return () => io.close();
}

if (document.body.dataset.page === 'signin') signInPage();
else consolePage();
