// ippbx web console: one page, no framework, no build step.
//
// Live state (calls, registrations) arrives only over server-sent events
// (/console/api/events); the one-second timer only re-draws the call durations
// locally. Everything else is fetched when the user asks for it (opening a tab,
// searching, saving a form). Every POST carries the X-CSRF-Token given at login.
// The page's CSP forbids inline script and style, so nothing here sets `style`:
// visibility is the `hidden` attribute, looks are classes from console.css.
'use strict';

const API = '/console/api';

const state = {
  user: '',
  role: '',
  csrf: '', // non-empty while signed in
  events: null, // the EventSource
  retryTimer: 0,
  clockOffset: 0, // server clock minus ours, in ms (durations use the server's clock)
  calls: new Map(), // callid -> the call as last pushed
  callTotal: 0, // live calls in the PBX (the page is sent at most a few hundred)
  tab: 'calls',
  cdr: { page: 1, pages: 1, seq: 0, stale: true },
  chartStale: true,
  refreshTimer: 0,
  config: new Map(), // kind -> items as last listed
};

// -- small helpers --------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

// el('td', {class: 'x', dataset: {callid: '1'}}, 'text', child…)
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

// an empty value shown as a dash that screen readers read as "none"
function orNone(text) {
  if (text !== '' && text !== null && text !== undefined) return String(text);
  return el('span', {},
    el('span', { class: 'none', 'aria-hidden': 'true', text: '—' }),
    el('span', { class: 'sr-only', text: 'none' }));
}

function fmtDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

const serverNow = () => (Date.now() + state.clockOffset) / 1000;

function say(id, text) {
  $(id).textContent = text || '';
}

// -- HTTP -----------------------------------------------------------------------------------

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The vendor API's errno values the configuration forms can meet (docs/api.md).
const ERRNO_TEXT = {
  10002: 'the request was not understood',
  10003: 'not allowed: a read-only user cannot change the configuration',
  10004: 'a required field is missing or empty',
  10006: 'no such extension',
  10011: 'no such number',
  10017: 'the change was refused and nothing changed: a value is not valid, ' +
    'a number or name is already taken, something it names does not exist, ' +
    'or something else still needs it',
  30001: 'an unexpected failure inside the PBX (see its log)',
};

class VendorError extends Error {
  constructor(errno) {
    super(`Failed (errno ${errno}): ${ERRNO_TEXT[errno] || 'refused by the PBX'}`);
    this.errno = errno;
  }
}

async function request(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (method !== 'GET') {
    init.headers['Content-Type'] = 'application/json';
    if (state.csrf) init.headers['X-CSRF-Token'] = state.csrf;
    init.body = JSON.stringify(body ?? {});
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new HttpError(0, 'The PBX cannot be reached.');
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null; // not JSON (e.g. a proxy's error page)
  }
  if (!response.ok) {
    if (response.status === 401 && state.csrf) {
      sessionEnded('Your session has ended. Please sign in again.');
    }
    throw new HttpError(response.status, (data && data.error) || `HTTP ${response.status}`);
  }
  return data ?? {};
}

// POST /console/api/call/<endpoint>: the vendor API's envelope, as the signed-in user.
async function vendor(endpoint, body) {
  const answer = await request('POST', `${API}/call/${endpoint}`, body);
  if (answer.status !== 'Success') throw new VendorError(answer.errno || '?');
  return answer;
}

// -- session --------------------------------------------------------------------------------

function showLogin(notice) {
  $('console-view').hidden = true;
  $('session').hidden = true;
  $('login-view').hidden = false;
  say('login-notice', notice);
  say('login-error', '');
  $('login-password').value = '';
  $('login-user').focus();
}

function signedIn(me) {
  state.user = me.user;
  state.role = me.role;
  state.csrf = me.csrf;
  document.body.classList.toggle('readonly', me.role !== 'admin');
  say('session-user', me.user);
  say('session-role', me.role === 'admin' ? 'administrator' : 'read only');
  $('login-view').hidden = true;
  $('session').hidden = false;
  $('console-view').hidden = false;
  state.cdr.stale = true;
  state.chartStale = true;
  connectEvents();
  const wanted = location.hash.slice(1);
  selectTab($(`tab-${wanted}`) ? wanted : state.tab, false);
  $(`tab-${state.tab}`).focus();
}

// after a logout, a 401 or an ended event stream: forget everything, back to the form
function sessionEnded(notice) {
  closeEvents();
  state.csrf = '';
  state.user = '';
  state.role = '';
  state.calls.clear();
  state.config.clear();
  for (const id of ['calls-body', 'ext-reg-body', 'trunk-reg-body', 'cdr-body', 'chart-body']) {
    $(id).replaceChildren();
  }
  $('chart').replaceChildren();
  $('config-sections').querySelectorAll('tbody').forEach((body) => body.replaceChildren());
  for (const form of document.querySelectorAll('.config-form')) { // nothing typed is kept
    form.reset();
    form.hidden = true;
    form.editing = null;
  }
  for (const message of document.querySelectorAll('#config-sections .notice, #config-sections .error')) {
    message.textContent = '';
  }
  $('cdr-q').value = '';
  state.cdr.page = 1;
  state.callTotal = 0;
  say('calls-summary', 'No live calls.');
  say('calls-error', '');
  updateCallCount();
  showLogin(notice);
}

async function login(event) {
  event.preventDefault();
  const user = $('login-user');
  const password = $('login-password');
  say('login-error', '');
  user.removeAttribute('aria-invalid');
  password.removeAttribute('aria-invalid');
  if (!user.value.trim() || !password.value) {
    const empty = user.value.trim() ? password : user;
    empty.setAttribute('aria-invalid', 'true');
    say('login-error', 'Enter your user name and password.');
    empty.focus();
    return;
  }
  const submit = $('login-submit');
  submit.disabled = true;
  try {
    const me = await request('POST', '/console/login',
      { username: user.value.trim(), password: password.value });
    password.value = '';
    signedIn(me);
  } catch (error) {
    let text = error.message;
    if (error.status === 401) text = `Sign-in failed: ${error.message}.`;
    if (error.status === 429) text = `Too many failed attempts: ${error.message}.`;
    say('login-error', text);
    password.setAttribute('aria-invalid', 'true');
    password.focus();
    password.select();
  } finally {
    submit.disabled = false;
  }
}

async function logout() {
  try {
    await request('POST', '/console/logout');
  } catch {
    // signed out on our side anyway
  }
  sessionEnded('You have signed out.');
}

// -- live updates (server-sent events) ------------------------------------------------------

const LIVE_TEXT = { open: 'Live', connecting: 'Reconnecting…', closed: 'Offline' };

function setLive(which) {
  const badge = $('live-state');
  badge.dataset.state = which;
  badge.textContent = LIVE_TEXT[which];
}

function closeEvents() {
  clearTimeout(state.retryTimer);
  if (state.events) state.events.close();
  state.events = null;
  setLive('closed');
}

function connectEvents() {
  closeEvents();
  const source = new EventSource(`${API}/events`);
  state.events = source;
  setLive('connecting');
  source.addEventListener('calls', (event) => {
    renderCalls(JSON.parse(event.data));
    setLive('open');
  });
  source.addEventListener('registrations', (event) => {
    renderRegistrations(JSON.parse(event.data));
  });
  source.addEventListener('error', () => {
    if (state.events !== source) return;
    if (source.readyState === EventSource.CLOSED) {
      // refused (a 401 ends it) or broken for good: still signed in?
      setLive('closed');
      checkSession();
    } else {
      setLive('connecting'); // the browser reconnects on its own
    }
  });
}

async function checkSession() {
  try {
    await request('GET', `${API}/me`);
  } catch (error) {
    if (error.status === 401) return; // request() went back to the login form
  }
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(() => {
    if (state.csrf) connectEvents();
  }, 3000);
}

// -- live calls -----------------------------------------------------------------------------

let formSeq = 0;

function callName(call) {
  return `${call.caller || 'unknown'} → ${call.callee || 'unknown'}`;
}

function buildCallRow(call) {
  const transferId = `transfer-number-${++formSeq}`;
  const name = callName(call);
  const button = (action, label) => el('button', {
    type: 'button', class: `action ${action}`, dataset: { action },
    'aria-label': `${label} ${name}`, text: label,
  });
  const transfer = button('transfer', 'Transfer');
  transfer.setAttribute('aria-expanded', 'false');
  const form = el('form', { class: 'transfer-form', hidden: true, novalidate: true },
    el('label', { for: transferId, text: 'Transfer to' }),
    el('input', { id: transferId, name: 'number', class: 'transfer-number',
      inputmode: 'tel', autocomplete: 'off', required: true }),
    el('button', { type: 'submit', class: 'transfer-go', text: 'Transfer now' }),
    el('button', { type: 'button', class: 'transfer-cancel secondary', dataset: { action: 'cancel' },
      text: 'Cancel' }),
    el('span', { class: 'error transfer-error', role: 'alert' }));
  const duration = el('td', { class: 'duration' });
  duration.append(document.createTextNode(''));
  return el('tr', { dataset: { callid: call.callid } },
    el('td', { class: 'caller' }),
    el('td', { class: 'callee' }),
    el('td', { class: 'trunk' }),
    el('td', { class: 'status' }),
    duration,
    el('td', { class: 'actions' },
      button('hangup', 'Hang up'), button('hold', 'Hold'), button('unhold', 'Unhold'),
      transfer, form));
}

function setCell(row, cls, value) {
  const cell = row.querySelector(`td.${cls}`);
  const text = value === '' || value === null || value === undefined ? '' : String(value);
  if (cell.dataset.value === text && cell.childNodes.length) return; // unchanged
  cell.dataset.value = text;
  cell.replaceChildren(orNone(text));
}

function updateCallRow(row, call) {
  row.dataset.status = call.status;
  setCell(row, 'caller', call.caller);
  setCell(row, 'callee', call.callee);
  setCell(row, 'trunk', call.trunk);
  setCell(row, 'status', call.status);
  const held = call.status === 'Wait';
  const answered = call.answered !== null && call.answered !== undefined;
  const readonly = state.role !== 'admin';
  const canAct = answered && !!call.extension && !readonly;
  const q = (action) => row.querySelector(`button[data-action="${action}"]`);
  const focused = document.activeElement;
  q('hangup').disabled = readonly;
  q('hold').hidden = held;
  q('unhold').hidden = !held;
  // Hold and Unhold take turns in one place: the keyboard focus follows
  if (held && focused === q('hold')) q('unhold').focus();
  if (!held && focused === q('unhold')) q('hold').focus();
  q('hold').disabled = !canAct;
  q('unhold').disabled = !canAct;
  q('transfer').disabled = !canAct;
  tickRow(row, call);
}

function tickRow(row, call) {
  const cell = row.querySelector('td.duration');
  const seconds = serverNow() - call.started;
  cell.firstChild.nodeValue = fmtDuration(seconds);
  if (call.answered) cell.title = `talking for ${fmtDuration(serverNow() - call.answered)}`;
  else cell.removeAttribute('title');
}

function tick() {
  if (!state.csrf) return;
  for (const row of $('calls-body').querySelectorAll('tr[data-callid]')) {
    const call = state.calls.get(row.dataset.callid);
    if (call) tickRow(row, call);
  }
}

function updateCallCount() {
  const n = state.calls.size;
  say('calls-count', String(n));
}

function renderCalls(snapshot) {
  state.clockOffset = snapshot.now * 1000 - Date.now();
  const body = $('calls-body');
  const rows = new Map();
  for (const row of body.querySelectorAll('tr[data-callid]')) rows.set(row.dataset.callid, row);
  const before = new Map(state.calls);
  state.calls = new Map(snapshot.calls.map((call) => [call.callid, call]));
  const news = [];
  for (const call of snapshot.calls) {
    let row = rows.get(call.callid);
    if (!row) {
      row = buildCallRow(call);
      body.append(row);
      news.push(`New call ${callName(call)}.`);
    }
    updateCallRow(row, call);
  }
  const ended = [];
  for (const [callid, row] of rows) {
    if (state.calls.has(callid)) continue;
    const wasFocused = row.contains(document.activeElement);
    row.remove();
    ended.push(`Call ${callName(before.get(callid) || {})} ended.`);
    if (wasFocused) $('panel-calls').focus(); // keep keyboard users somewhere sensible
  }
  updateCallCount();
  const total = snapshot.total ?? state.calls.size;
  if (news.length || ended.length || total !== state.callTotal) {
    const n = state.calls.size;
    let count = n ? `${n} live call${n === 1 ? '' : 's'}.` : 'No live calls.';
    if (total > n) count = `${total} live calls; the ${n} oldest are shown.`;
    say('calls-summary', [...news, ...ended, count].join(' '));
  }
  state.callTotal = total;
  if (ended.length) callsEnded();
}

// a call ended: its record is in the history now (written just after), the chart changed
function callsEnded() {
  state.cdr.stale = true;
  state.chartStale = true;
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => {
    if (state.tab === 'history') loadCdr();
    if (state.tab === 'chart') loadChart();
  }, 700);
}

const ACTION_TEXT = { hangup: 'hang up', hold: 'hold', unhold: 'resume', transfer: 'transfer' };

// buttons whose request is under way (not disabled meanwhile: a disabled button would
// lose the keyboard focus)
const pending = new WeakSet();

async function callAction(callid, action, body, button) {
  if (pending.has(button)) return false;
  pending.add(button);
  button.setAttribute('aria-busy', 'true');
  const call = state.calls.get(callid);
  say('calls-error', '');
  try {
    await request('POST', `${API}/calls/${encodeURIComponent(callid)}/${action}`, body);
    return true; // the next push shows the outcome
  } catch (error) {
    const what = call ? ` the call ${callName(call)}` : ' the call';
    say('calls-error', `Could not ${ACTION_TEXT[action]}${what}: ${error.message}`);
    return false;
  } finally {
    pending.delete(button);
    button.removeAttribute('aria-busy');
  }
}

function showTransfer(row, open) {
  const form = row.querySelector('.transfer-form');
  const toggle = row.querySelector('button[data-action="transfer"]');
  form.hidden = !open;
  toggle.setAttribute('aria-expanded', String(open));
  form.querySelector('.transfer-error').textContent = '';
  if (open) form.querySelector('input').focus();
  else toggle.focus();
}

function onCallsClick(event) {
  const button = event.target.closest('button[data-action]');
  const row = button && button.closest('tr[data-callid]');
  if (!row) return;
  const action = button.dataset.action;
  if (action === 'transfer') showTransfer(row, row.querySelector('.transfer-form').hidden);
  else if (action === 'cancel') showTransfer(row, false);
  else callAction(row.dataset.callid, action, undefined, button);
}

async function onTransferSubmit(event) {
  const form = event.target.closest('.transfer-form');
  if (!form) return;
  event.preventDefault();
  const row = form.closest('tr[data-callid]');
  const input = form.querySelector('input');
  const number = input.value.trim();
  const problem = form.querySelector('.transfer-error');
  if (!number) {
    input.setAttribute('aria-invalid', 'true');
    problem.textContent = 'Enter the number to transfer to.';
    input.focus();
    return;
  }
  input.removeAttribute('aria-invalid');
  const ok = await callAction(row.dataset.callid, 'transfer', { number },
    form.querySelector('.transfer-go'));
  if (ok && row.isConnected) {
    input.value = '';
    showTransfer(row, false);
  }
}

function onTransferKey(event) {
  if (event.key !== 'Escape') return;
  const row = event.target.closest('tr[data-callid]');
  if (row && event.target.closest('.transfer-form')) showTransfer(row, false);
}

// -- registrations --------------------------------------------------------------------------

function statusCell(status) {
  const word = status || 'Unknown';
  return el('td', { class: `state state-${word.toLowerCase().replace(/[^a-z]+/g, '-')}`, text: word });
}

// a table body's one row saying it has nothing to show
function emptyRow(columns, text) {
  return el('tr', {}, el('td', { colspan: columns, class: 'empty', text }));
}

function renderRegistrations(data) {
  const extensions = data.extensions || [];
  const trunks = data.trunks || [];
  $('ext-reg-body').replaceChildren(...extensions.map((ext) => {
    const contacts = (ext.contacts || []).map((c) =>
      el('li', { text: `${c.uri} (expires in ${Math.round(c.expires)} s)` }));
    return el('tr', { dataset: { number: ext.number } },
      el('th', { scope: 'row', text: ext.number }),
      el('td', {}, orNone(ext.name)),
      statusCell(ext.status),
      el('td', {}, contacts.length ? el('ul', { class: 'contacts' }, ...contacts) : orNone('')));
  }));
  if (!extensions.length) $('ext-reg-body').append(emptyRow(4, 'No extensions.'));
  $('trunk-reg-body').replaceChildren(...trunks.map((trunk) => el('tr',
    { dataset: { trunk: trunk.name } },
    el('th', { scope: 'row', text: trunk.name }),
    el('td', { text: trunk.type }),
    statusCell(trunk.status),
    el('td', { text: trunk.max_channels ? `${trunk.in_use} of ${trunk.max_channels}`
      : `${trunk.in_use} (no limit)` }))));
  if (!trunks.length) $('trunk-reg-body').append(emptyRow(4, 'No trunks.'));
}

// -- call history ---------------------------------------------------------------------------

async function loadCdr() {
  const seq = ++state.cdr.seq;
  const params = new URLSearchParams({
    q: $('cdr-q').value.trim(), page: String(state.cdr.page), per_page: $('cdr-per-page').value,
  });
  $('cdr-table').setAttribute('aria-busy', 'true');
  try {
    const data = await request('GET', `${API}/cdr?${params}`);
    if (seq !== state.cdr.seq) return; // a newer search is under way
    state.cdr.stale = false;
    say('cdr-error', '');
    renderCdr(data);
  } catch (error) {
    if (seq === state.cdr.seq) say('cdr-error', `Could not load the call history: ${error.message}`);
  } finally {
    if (seq === state.cdr.seq) $('cdr-table').removeAttribute('aria-busy');
  }
}

function renderCdr(data) {
  const pages = Math.max(1, Math.ceil(data.total / data.per_page));
  state.cdr.page = data.page;
  state.cdr.pages = pages;
  $('cdr-body').replaceChildren(...data.items.map((item) => {
    let recording = orNone('');
    if (item.recording) {
      const label = `Recording of the call ${item.caller} → ${item.callee} at ${item.start}`;
      recording = el('div', { class: 'recording' },
        el('audio', { controls: true, preload: 'none', src: item.recording, 'aria-label': label }),
        el('a', { href: item.recording, download: '', text: 'Download',
          'aria-label': `Download ${label.toLowerCase()}` }));
    }
    return el('tr', { dataset: { cdrid: item.id } },
      el('td', { class: 'start', text: item.start }),
      el('td', { class: 'caller' }, orNone(item.caller)),
      el('td', { class: 'callee' }, orNone(item.callee)),
      el('td', { class: 'trunk' }, orNone(item.trunk)),
      el('td', { class: 'type', text: item.type }),
      el('td', { class: 'status', text: item.status }),
      el('td', { class: 'duration', text: fmtDuration(item.duration) }),
      el('td', { class: 'talk', text: fmtDuration(item.talk) }),
      el('td', { class: 'rec' }, recording));
  }));
  if (!data.items.length) $('cdr-body').append(emptyRow(9, 'No calls.'));
  const n = data.total;
  say('cdr-summary', n ? `${n} call${n === 1 ? '' : 's'} found.` : 'No calls found.');
  say('cdr-page', `Page ${data.page} of ${pages}`);
  $('cdr-prev').disabled = data.page <= 1;
  $('cdr-next').disabled = data.page >= pages;
}

let searchTimer = 0;

function searchCdr(event) {
  if (event) event.preventDefault();
  clearTimeout(searchTimer);
  state.cdr.page = 1;
  loadCdr();
}

function turnPage(delta) {
  const page = Math.min(Math.max(1, state.cdr.page + delta), state.cdr.pages);
  if (page === state.cdr.page) return;
  state.cdr.page = page;
  loadCdr();
}

// -- calls per hour -------------------------------------------------------------------------

async function loadChart() {
  try {
    const data = await request('GET', `${API}/stats/hourly`);
    state.chartStale = false;
    say('chart-error', '');
    drawChart(data.hours || []);
  } catch (error) {
    say('chart-error', `Could not load the statistics: ${error.message}`);
  }
}

function hourLabel(epoch) {
  return String(new Date(epoch * 1000).getHours()).padStart(2, '0');
}

// a round top for the axis: 1, 2, 5, 10, 20, 50…
function axisTop(max) {
  let step = 1;
  while (true) {
    for (const m of [1, 2, 5]) if (m * step >= max) return m * step;
    step *= 10;
  }
}

function drawChart(hours) {
  const width = 760;
  const height = 280;
  const pad = { left: 44, right: 12, top: 14, bottom: 40 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const top = axisTop(Math.max(1, ...hours.map((h) => h.calls)));
  const y = (n) => pad.top + plotH - (n / top) * plotH;
  const slot = plotW / Math.max(1, hours.length);
  const barW = Math.max(2, slot * 0.7);
  const total = hours.reduce((sum, h) => sum + h.calls, 0);
  const busiest = hours.reduce((best, h) => (h.calls > (best ? best.calls : 0) ? h : best), null);

  const summary = `${total} call${total === 1 ? '' : 's'} in the last 24 hours` +
    (busiest ? `; the busiest hour was ${hourLabel(busiest.start)}:00 with ${busiest.calls}.` : '.');
  const chart = svg('svg', {
    id: 'hourly-chart', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-labelledby': 'hourly-chart-title hourly-chart-desc',
  },
  svg('title', { id: 'hourly-chart-title' }, 'Calls per hour, last 24 hours'),
  svg('desc', { id: 'hourly-chart-desc' }, summary));

  for (const n of [0, top / 2, top]) { // grid lines and their labels
    chart.append(
      svg('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: y(n), y2: y(n) }),
      svg('text', { class: 'axis', x: pad.left - 6, y: y(n) + 4, 'text-anchor': 'end' },
        String(Math.round(n * 10) / 10)));
  }
  hours.forEach((hour, i) => {
    const x = pad.left + i * slot + (slot - barW) / 2;
    const label = `${hourLabel(hour.start)}:00: ${hour.calls} call${hour.calls === 1 ? '' : 's'}, ` +
      `${hour.answered} answered`;
    const group = svg('g', { class: 'hour' }, svg('title', {}, label),
      svg('rect', {
        class: 'bar', x, width: barW, y: y(hour.calls), height: y(0) - y(hour.calls),
        'data-calls': hour.calls, 'data-answered': hour.answered, 'data-start': hour.start,
      }),
      svg('rect', {
        class: 'bar-answered', x, width: barW, y: y(hour.answered),
        height: y(0) - y(hour.answered),
      }));
    chart.append(group);
    if (i % 3 === 0 || i === hours.length - 1) {
      chart.append(svg('text', {
        class: 'axis', x: x + barW / 2, y: height - pad.bottom + 16, 'text-anchor': 'middle',
      }, hourLabel(hour.start)));
    }
  });
  chart.append(svg('text', {
    class: 'axis', x: pad.left + plotW / 2, y: height - 6, 'text-anchor': 'middle',
  }, 'hour of the day'));
  $('chart').replaceChildren(chart);

  $('chart-body').replaceChildren(...hours.map((hour) => el('tr', {},
    el('th', { scope: 'row', text: `${hourLabel(hour.start)}:00` }),
    el('td', { text: String(hour.calls) }),
    el('td', { text: String(hour.answered) }))));
}

// -- configuration --------------------------------------------------------------------------
//
// Each kind: how to list it, its columns, its form fields (named as the vendor API names
// them), and how to add, update and delete one. `source` is the field of the listed item
// an edit form starts from; an update sends only the fields the user changed.

const CONFIG = [
  {
    kind: 'extension', one: 'extension', title: 'Extensions',
    query: ['extension/query', {}], listKey: 'extinfos', key: (it) => it.extnumber,
    columns: [['Number', 'extnumber'], ['Name', 'username'], ['Caller ID', 'callerid'],
      ['Voicemail', 'hasvoicemail'], ['Status', 'status']],
    fields: [
      { name: 'number', update: 'extnumber', label: 'Number', source: 'extnumber', required: true,
        inputmode: 'numeric' },
      { name: 'username', label: 'Name', source: 'username' },
      { name: 'callerid', label: 'Caller ID', source: 'callerid' },
      { name: 'registerpassword', label: 'SIP password', type: 'password', secret: true,
        hint: 'Leave empty to keep it (a new extension then gets a random one).' },
      { name: 'maxregistrations', label: 'Phones that may register', source: 'maxregistrations',
        type: 'number' },
      { name: 'hasvoicemail', label: 'Voicemail', source: 'hasvoicemail', type: 'checkbox' },
      { name: 'vmsecret', label: 'Voicemail PIN', source: 'vmsecret', inputmode: 'numeric' },
      { name: 'email', label: 'E-mail', source: 'email', type: 'email' },
      { name: 'dnd', label: 'Do not disturb', source: 'dnd', type: 'checkbox' },
    ],
    add: 'extension/add', update: 'extension/update', remove: 'extension/delete',
    updateKey: (it) => ({ extid: it.extnumber }), removeBody: (it) => ({ number: it.extnumber }),
  },
  {
    kind: 'trunk', one: 'trunk', title: 'Trunks',
    query: ['siptrunk/query', { trunkname: 'all' }], listKey: 'trunks', key: (it) => it.trunkname,
    columns: [['Name', 'trunkname'], ['Type', 'trunktype'], ['Host', 'host'], ['Port', 'port']],
    fields: [
      { name: 'trunkname', label: 'Name', source: 'trunkname', required: true },
      { name: 'trunktype', label: 'Type', source: 'trunktype', type: 'select',
        options: [['peer', 'peer (no registration)'], ['register', 'register (to a provider)']],
        required: true },
      { name: 'host', label: 'Host', source: 'host', required: true },
      { name: 'port', label: 'Port', source: 'port', type: 'number', initial: '5060' },
      { name: 'username', label: 'User name (register trunks)', source: 'username' },
      { name: 'password', label: 'Password (register trunks)', type: 'password', secret: true,
        hint: 'Leave empty to keep it.' },
      { name: 'fromuser', label: 'From user', source: 'fromuser' },
    ],
    add: 'siptrunk/add', update: 'siptrunk/update', remove: 'siptrunk/delete',
    updateKey: (it) => ({ id: it.id }), removeBody: (it) => ({ trunkname: it.trunkname }),
  },
  {
    kind: 'outroute', one: 'outbound route', title: 'Outbound routes',
    query: ['outroute/query', { name: 'all' }], listKey: 'outroutes', key: (it) => it.name,
    columns: [['Name', 'name'], ['Prefix', 'prefix'], ['Pattern', 'matchpattern'],
      ['Prepend', 'prepend'], ['Trunks', 'trunks'], ['Extensions', 'callerid']],
    fields: [
      { name: 'name', label: 'Name', source: 'name', required: true },
      { name: 'prefix', label: 'Prefix (removed before dialling out)', source: 'prefix' },
      { name: 'matchpattern', label: 'Pattern after the prefix', source: 'matchpattern',
        required: true, hint: 'e.g. X. (any number) or NXXXXXX' },
      { name: 'prepend', label: 'Prepend', source: 'prepend' },
      { name: 'trunks', label: 'Trunks', source: 'trunks', required: true,
        hint: 'Comma-separated, in failover order.' },
      { name: 'callerid', label: 'Extensions that may use it', source: 'callerid',
        hint: 'Comma-separated; empty: every extension.' },
    ],
    add: 'outroute/add', update: 'outroute/update', remove: 'outroute/delete',
    updateKey: (it) => ({ id: it.id }), removeBody: (it) => ({ name: it.name }),
  },
  {
    kind: 'inroute', one: 'inbound route', title: 'Inbound routes',
    query: ['inroute/query', { name: 'all' }], listKey: 'inroutes', key: (it) => it.name,
    columns: [['Name', 'name'], ['DID', 'did'], ['Caller ID', 'caller_id'],
      ['Destination type', 'desttype'], ['Destination', 'dest']],
    fields: [
      { name: 'name', label: 'Name', source: 'name', required: true, fixed: true },
      { name: 'did', label: 'DID (number called)', source: 'did', hint: 'Empty: any.' },
      { name: 'caller_id', label: 'Caller ID', source: 'caller_id',
        hint: 'Empty: any caller; _ + pattern for a pattern.' },
      { name: 'trunk', label: 'Trunk', hint: 'Empty: calls from any trunk.' },
      { name: 'desttype', label: 'Destination type', source: 'desttype', type: 'select',
        required: true, options: [['extension', 'extension'], ['voicemail', 'voicemail'],
          ['ivr', 'IVR'], ['ringgroup', 'ring group'], ['queue', 'queue'],
          ['hangup', 'hang up']] },
      { name: 'dest', label: 'Destination number', source: 'dest',
        hint: 'Empty when the destination is hang up.' },
    ],
    add: 'inroute/add', update: 'inroute/update', remove: 'inroute/delete',
    updateKey: (it) => ({ name: it.name }), removeBody: (it) => ({ name: it.name }),
  },
];

function buildField(spec, field) {
  const id = `cfg-${spec.kind}-${field.name}`;
  const hintId = field.hint ? `${id}-hint` : undefined;
  let input;
  if (field.type === 'select') {
    input = el('select', { id, name: field.name },
      ...field.options.map(([value, text]) => el('option', { value, text })));
  } else {
    input = el('input', {
      id, name: field.name, type: field.type || 'text', inputmode: field.inputmode,
      autocomplete: field.secret ? 'new-password' : 'off',
    });
  }
  if (field.required) input.setAttribute('aria-required', 'true');
  if (hintId) input.setAttribute('aria-describedby', hintId);
  const label = el('label', { for: id, text: field.label });
  const hint = hintId ? el('p', { id: hintId, class: 'hint', text: field.hint }) : null;
  const cls = field.type === 'checkbox' ? 'field check' : 'field';
  return field.type === 'checkbox'
    ? el('div', { class: cls }, input, label, hint)
    : el('div', { class: cls }, label, input, hint);
}

function buildConfigSection(spec) {
  const k = spec.kind;
  const form = el('form', { id: `cfg-${k}-form`, class: 'config-form', hidden: true, novalidate: true },
    el('fieldset', {},
      el('legend', { id: `cfg-${k}-legend` }),
      el('div', { class: 'fields' }, ...spec.fields.map((field) => buildField(spec, field))),
      el('p', { class: 'error', id: `cfg-${k}-form-error`, role: 'alert' }),
      el('div', { class: 'buttons' },
        el('button', { type: 'submit', id: `cfg-${k}-save`, text: 'Save' }),
        el('button', { type: 'button', id: `cfg-${k}-cancel`, class: 'secondary', text: 'Cancel' }))));
  const head = el('tr', {}, ...spec.columns.map(([title]) => el('th', { scope: 'col', text: title })),
    el('th', { scope: 'col', class: 'admin-only', text: 'Actions' }));
  const section = el('section', { id: `cfg-${k}`, class: 'config-kind',
    'aria-labelledby': `cfg-${k}-title` },
  el('h3', { id: `cfg-${k}-title`, text: spec.title }),
  el('p', { class: 'toolbar' },
    el('button', { type: 'button', id: `cfg-${k}-add`, class: 'admin-only',
      text: `Add ${spec.one}` }),
    el('button', { type: 'button', id: `cfg-${k}-reload`, class: 'secondary', text: 'Reload',
      'aria-label': `Reload the ${spec.title.toLowerCase()}` })),
  el('p', { class: 'notice', id: `cfg-${k}-status`, role: 'status' }),
  el('p', { class: 'error', id: `cfg-${k}-error`, role: 'alert' }),
  form,
  el('div', { class: 'table-wrap' },
    el('table', { id: `cfg-${k}-table`, 'aria-labelledby': `cfg-${k}-title` },
      el('thead', {}, head), el('tbody', { id: `cfg-${k}-body` }))));

  $(`config-sections`).append(section);
  section.querySelector(`#cfg-${k}-add`).addEventListener('click', () => openForm(spec, null));
  section.querySelector(`#cfg-${k}-reload`).addEventListener('click', () => loadKind(spec));
  section.querySelector(`#cfg-${k}-cancel`).addEventListener('click', () => closeForm(spec));
  form.addEventListener('submit', (event) => saveForm(event, spec));
  form.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeForm(spec);
  });
  section.querySelector('tbody').addEventListener('click', (event) => onConfigRowClick(event, spec));
}

async function loadKind(spec) {
  const body = $(`cfg-${spec.kind}-body`);
  try {
    const answer = await vendor(...spec.query);
    const items = answer[spec.listKey] || [];
    state.config.set(spec.kind, items);
    say(`cfg-${spec.kind}-error`, '');
    body.replaceChildren(...items.map((item) => configRow(spec, item)));
    if (!items.length) body.append(emptyRow(spec.columns.length + 1, `No ${spec.title.toLowerCase()}.`));
  } catch (error) {
    say(`cfg-${spec.kind}-error`, `Could not list the ${spec.title.toLowerCase()}: ${error.message}`);
  }
}

function loadConfig() {
  return Promise.all(CONFIG.map(loadKind));
}

function configRow(spec, item) {
  const key = spec.key(item);
  const cells = spec.columns.map(([, field], i) => {
    const value = item[field] ?? '';
    return i === 0 ? el('th', { scope: 'row', text: String(value) }) : el('td', {}, orNone(value));
  });
  return el('tr', { dataset: { key } }, ...cells,
    el('td', { class: 'actions admin-only' }, actionButtons(spec, key)));
}

function actionButtons(spec, key) {
  return el('span', { class: 'row-actions' },
    el('button', { type: 'button', dataset: { do: 'edit' }, text: 'Edit',
      'aria-label': `Edit ${spec.one} ${key}` }),
    el('button', { type: 'button', dataset: { do: 'delete' }, text: 'Delete',
      'aria-label': `Delete ${spec.one} ${key}` }));
}

function onConfigRowClick(event, spec) {
  const button = event.target.closest('button[data-do]');
  const row = button && button.closest('tr[data-key]');
  if (!row) return;
  const key = row.dataset.key;
  const item = (state.config.get(spec.kind) || []).find((it) => String(spec.key(it)) === key);
  if (!item) return;
  const cell = button.closest('td');
  const what = button.dataset.do;
  if (what === 'edit') openForm(spec, item);
  else if (what === 'delete') {
    // an inline confirmation instead of a modal confirm()
    cell.replaceChildren(el('span', { class: 'confirm' },
      el('span', { text: `Delete ${spec.one} ${key}?` }),
      el('button', { type: 'button', class: 'danger', dataset: { do: 'confirm-delete' },
        text: 'Yes, delete' }),
      el('button', { type: 'button', class: 'secondary', dataset: { do: 'keep' }, text: 'Keep' })));
    cell.querySelector('button[data-do="keep"]').focus();
  } else if (what === 'keep') {
    cell.replaceChildren(actionButtons(spec, key));
    cell.querySelector('button[data-do="delete"]').focus();
  } else if (what === 'confirm-delete') {
    removeItem(spec, item, button);
  }
}

async function removeItem(spec, item, button) {
  button.disabled = true;
  say(`cfg-${spec.kind}-error`, '');
  try {
    await vendor(spec.remove, spec.removeBody(item));
    say(`cfg-${spec.kind}-status`, `Deleted ${spec.one} ${spec.key(item)}.`);
    await loadConfig();
    $(`cfg-${spec.kind}-add`).focus();
  } catch (error) {
    button.disabled = false;
    say(`cfg-${spec.kind}-error`, `Could not delete ${spec.one} ${spec.key(item)}: ${error.message}`);
  }
}

// the form starts from `item` (edit) or from nothing (add)
function openForm(spec, item) {
  const form = $(`cfg-${spec.kind}-form`);
  form.dataset.mode = item ? 'edit' : 'add';
  form.editing = item;
  say(`cfg-${spec.kind}-legend`, item ? `Edit ${spec.one} ${spec.key(item)}` : `New ${spec.one}`);
  say(`cfg-${spec.kind}-form-error`, '');
  for (const field of spec.fields) {
    const input = form.elements.namedItem(field.name);
    const value = item && field.source ? String(item[field.source] ?? '') : field.initial || '';
    if (field.type === 'checkbox') input.checked = value === 'on';
    else if (field.type === 'select') input.value = value || field.options[0][0];
    else input.value = value;
    input.dataset.initial = field.type === 'checkbox' ? String(input.checked) : input.value;
    input.readOnly = !!(item && field.fixed);
    input.removeAttribute('aria-invalid');
  }
  form.hidden = false;
  form.elements.namedItem(spec.fields[0].name).focus();
  if (item && spec.fields[0].fixed) form.elements.namedItem(spec.fields[1].name).focus();
}

function closeForm(spec) {
  const form = $(`cfg-${spec.kind}-form`);
  const wasEditing = form.editing;
  form.hidden = true;
  form.editing = null;
  const row = wasEditing &&
    $(`cfg-${spec.kind}-body`).querySelector(`tr[data-key="${CSS.escape(String(spec.key(wasEditing)))}"]`);
  const back = row ? row.querySelector('button[data-do="edit"]') : $(`cfg-${spec.kind}-add`);
  if (back) back.focus();
}

async function saveForm(event, spec) {
  event.preventDefault();
  const form = event.target;
  const item = form.editing;
  const body = item ? spec.updateKey(item) : {};
  let missing = null;
  for (const field of spec.fields) {
    const input = form.elements.namedItem(field.name);
    const value = field.type === 'checkbox' ? (input.checked ? 'on' : 'off') : input.value.trim();
    const current = field.type === 'checkbox' ? String(input.checked) : input.value;
    input.removeAttribute('aria-invalid');
    if (field.required && !value) {
      input.setAttribute('aria-invalid', 'true');
      missing = missing || input;
      continue;
    }
    if (item) {
      if (current === input.dataset.initial) continue; // unchanged: keep what is there
      if (field.secret && !value) continue;
      body[field.update || field.name] = value;
    } else if (value && !(field.type === 'checkbox' && value === 'off')) {
      body[field.name] = value;
    }
  }
  if (missing) {
    say(`cfg-${spec.kind}-form-error`, 'Fill in the required fields.');
    missing.focus();
    return;
  }
  const save = $(`cfg-${spec.kind}-save`);
  save.disabled = true;
  try {
    await vendor(item ? spec.update : spec.add, body);
    const name = item ? spec.key(item) : body[spec.fields[0].name];
    say(`cfg-${spec.kind}-status`, `${item ? 'Saved' : 'Added'} ${spec.one} ${name}.`);
    form.hidden = true;
    form.editing = null;
    await loadConfig(); // a rename shows in the routes too
    $(`cfg-${spec.kind}-add`).focus();
  } catch (error) {
    say(`cfg-${spec.kind}-form-error`, error.message);
  } finally {
    save.disabled = false;
  }
}

// -- tabs -----------------------------------------------------------------------------------

const TABS = ['calls', 'registrations', 'history', 'chart', 'config'];

function selectTab(name, focus) {
  for (const tab of TABS) {
    const selected = tab === name;
    const button = $(`tab-${tab}`);
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`panel-${tab}`).hidden = !selected;
  }
  state.tab = name;
  if (focus) $(`tab-${name}`).focus();
  if (location.hash.slice(1) !== name) history.replaceState(null, '', `#${name}`);
  if (name === 'history' && state.cdr.stale) loadCdr();
  if (name === 'chart') loadChart();
  if (name === 'config') loadConfig();
}

function onTabKey(event) {
  const at = TABS.indexOf(state.tab);
  const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: TABS.length - 1 };
  if (!(event.key in moves)) return;
  event.preventDefault();
  selectTab(TABS[(moves[event.key] + TABS.length) % TABS.length], true);
}

// -- start ----------------------------------------------------------------------------------

function bind() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  for (const tab of TABS) $(`tab-${tab}`).addEventListener('click', () => selectTab(tab, false));
  document.querySelector('[role="tablist"]').addEventListener('keydown', onTabKey);
  const calls = $('calls-body');
  calls.addEventListener('click', onCallsClick);
  calls.addEventListener('submit', onTransferSubmit);
  calls.addEventListener('keydown', onTransferKey);
  $('cdr-form').addEventListener('submit', searchCdr);
  $('cdr-q').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(searchCdr, 400);
  });
  $('cdr-per-page').addEventListener('change', () => searchCdr());
  $('cdr-prev').addEventListener('click', () => turnPage(-1));
  $('cdr-next').addEventListener('click', () => turnPage(1));
  $('chart-refresh').addEventListener('click', loadChart);
  CONFIG.forEach(buildConfigSection);
  setInterval(tick, 1000);
}

async function start() {
  bind();
  try {
    signedIn(await request('GET', `${API}/me`));
  } catch (error) {
    showLogin(error.status === 401 ? '' : error.message);
  }
}

document.addEventListener('DOMContentLoaded', start);
