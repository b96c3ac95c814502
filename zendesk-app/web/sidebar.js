// zenklav's Zendesk ticket sidebar: shows the requester's Klaviyo profile card.
//
// The page comes from zenklav itself (sidebar.html, after Zendesk's signed POST), so every call
// below is same-origin: GET /api/v1/sidebar/profile for the card and POST /api/v1/sidebar/session
// to renew the session token, both with "Authorization: Bearer <token>". Zendesk is reached only
// through the ZAF SDK (zaf_sdk.js): the ticket, the requester, the agent's locale and the colour
// scheme, the resize of the iframe, and the events that mean the card is stale.
//
// The root element carries data-state: loading, found, partial, empty or error; tests read it
// there or from window.zenklavSidebar.state. Data from the server and from Zendesk goes into
// the page as text (textContent), never as HTML.
(() => {
  'use strict';

  const API = '/api/v1/sidebar';
  const FETCH_TIMEOUT_MS = 20000;
  // Renew the session this long before it expires (or at half its remaining life when shorter).
  const SESSION_RENEW_BEFORE_MS = 2 * 60 * 1000;
  const SESSION_RETRY_MS = 30 * 1000;
  // Activity newer than this shows as "3 hours ago", older as a date.
  const RELATIVE_ACTIVITY_MS = 7 * 24 * 3600 * 1000;
  // Sections of the card that come from Klaviyo; "support" comes from zenklav's own store.
  const KLAVIYO_SECTIONS = ['profile', 'activity', 'segments', 'lists'];
  const SECTION_ORDER = ['profile', 'activity', 'segments', 'lists', 'support'];

  const html = document.documentElement;
  const root = document.querySelector('[data-testid="sidebar"]');
  const MESSAGES = window.ZENKLAV_MESSAGES || {};
  let lang = pickLang(html.lang);
  let locale = lang;
  // For tests: the state on screen, the language and the theme in use.
  const exposed = { state: root.dataset.state || 'loading', lang, theme: '' };
  window.zenklavSidebar = exposed;
  const session = {
    token: meta('zenklav-session'),
    expires: Number(meta('zenklav-session-expires')) * 1000 || 0,
  };
  let requester = null; // as Zendesk knows it: {id, name, email, phone}
  let loadSeq = 0;
  let inflight = null; // the AbortController of the profile request under way
  let renewTimer = 0;

  // --- Theme: Zendesk's colour scheme when it tells us, else the browser's preference. ---
  // Zendesk passes ?colorScheme=light|dark in the iframe URL, answers client.get('colorScheme')
  // and fires colorScheme.changed when the agent switches; older hosts do none of these.
  const media = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
  let zendeskScheme = schemeOf(new URLSearchParams(location.search).get('colorScheme'));
  applyTheme();
  if (media) {
    if (media.addEventListener) media.addEventListener('change', applyTheme);
    else if (media.addListener) media.addListener(applyTheme);
  }

  const client = window.ZAFClient ? window.ZAFClient.init() : false;
  if (!client) {
    // Opened outside Zendesk: no origin/app_guid in the URL, so nobody to talk to.
    render('error', [message(t('outside_zendesk'), 'error')]);
    return;
  }

  client.on('colorScheme.changed', (value) => {
    const scheme = schemeOf(value && typeof value === 'object' ? value.colorScheme : value);
    if (scheme) {
      zendeskScheme = scheme;
      applyTheme();
    }
  });
  client.on('ticket.requester.id.changed', () => load({ quiet: false }));
  client.on('ticket.saved', () => load({ quiet: true }));
  observeSize();
  scheduleSessionRenewal();
  // Timers do not run while a laptop sleeps: on waking, renew at once if the token is near or
  // past its end (zenklav renews one that expired up to half an hour ago).
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && session.expires - Date.now() < SESSION_RENEW_BEFORE_MS) renewSession();
  });
  load({ first: true });

  // load reads the ticket from Zendesk, then the card from zenklav. quiet keeps the current card
  // on screen while it refreshes (after a save); otherwise the skeleton shows.
  async function load({ first = false, quiet = false, renewed = false } = {}) {
    const seq = ++loadSeq;
    if (inflight) inflight.abort();
    inflight = null;

    const paths = ['ticket.id', 'ticket.requester', 'ticket.brand'];
    if (first) paths.push('currentUser.locale', 'colorScheme');
    let got;
    try {
      // A multi-get resolves with one key per path; a path the host cannot answer (a new
      // ticket's id, colorScheme on an older Zendesk) is missing or listed in got.errors.
      got = await client.get(paths);
    } catch (err) {
      if (seq !== loadSeq) return;
      if (first) setLanguage(null);
      renderError({ message: t('zendesk_failed') });
      return;
    }
    if (seq !== loadSeq) return;
    got = got || {};
    if (first) {
      setLanguage(got['currentUser.locale']);
      const scheme = schemeOf(got.colorScheme);
      if (scheme) {
        zendeskScheme = scheme;
        applyTheme();
      }
    }

    const ticketId = idOf(got['ticket.id']);
    requester = requesterOf(got['ticket.requester']);
    const brandId = idOf(got['ticket.brand'] && got['ticket.brand'].id);

    let query;
    if (ticketId) {
      // The requester the agent sees goes along: zenklav reads the ticket again when its
      // cached copy names someone else (the requester was changed and saved).
      query = 'ticket_id=' + encodeURIComponent(ticketId);
      if (requester && requester.id) query += '&requester_id=' + encodeURIComponent(requester.id);
    } else if (requester && requester.id) {
      // A new ticket has no id yet: ask by requester, and say which brand the ticket is for
      // (a brand decides the Klaviyo account).
      query = 'requester_id=' + encodeURIComponent(requester.id);
      if (brandId) query += '&brand_id=' + encodeURIComponent(brandId);
    } else {
      render('empty', [requesterHeader(null), message(t('no_requester'), 'info')]);
      return;
    }

    if (quiet && (exposed.state === 'found' || exposed.state === 'partial' || exposed.state === 'empty')) {
      root.setAttribute('aria-busy', 'true');
    } else {
      renderLoading();
    }

    const ctrl = new AbortController();
    inflight = ctrl;
    let result;
    try {
      result = await api('GET', '/profile?' + query, ctrl);
    } catch (err) {
      result = { error: err };
    }
    if (seq !== loadSeq) return;
    inflight = null;
    if (result.error && result.error.status === 401 && !renewed) {
      // The token lapsed (a sleeping laptop, a failed renewal): renew once and ask again.
      const before = session.token;
      await renewSession();
      if (seq === loadSeq && session.token !== before) return load({ quiet, renewed: true });
    }
    if (seq !== loadSeq) return;
    if (result.error) {
      renderError(result.error);
      return;
    }
    renderCard(result.body);
  }

  // api calls zenklav with the session token. It resolves {body} for a 2xx JSON answer and
  // rejects with {status, code, message} otherwise (status 0: no answer).
  async function api(method, path, ctrl) {
    ctrl = ctrl || new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ctrl.abort();
    }, FETCH_TIMEOUT_MS);
    let res;
    try {
      res = await fetch(API + path, {
        method,
        headers: { Accept: 'application/json', Authorization: 'Bearer ' + session.token },
        cache: 'no-store',
        signal: ctrl.signal,
      });
    } catch (err) {
      throw { status: 0, code: timedOut ? 'timeout' : 'network', message: '' };
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try {
      body = await res.json();
    } catch (err) {
      body = null;
    }
    if (!res.ok) {
      const e = (body && body.error) || {};
      throw {
        status: res.status,
        code: typeof e.code === 'string' ? e.code : '',
        message: typeof e.message === 'string' ? e.message : '',
      };
    }
    if (!body || typeof body !== 'object') throw { status: res.status, code: 'bad_answer', message: '' };
    return { body };
  }

  // --- Session renewal -------------------------------------------------------------------

  function scheduleSessionRenewal() {
    clearTimeout(renewTimer);
    if (!session.token || !session.expires) return;
    const left = session.expires - Date.now();
    const delay = Math.max(1000, left - SESSION_RENEW_BEFORE_MS, left / 2);
    renewTimer = setTimeout(renewSession, Math.min(delay, 0x7fffffff));
  }

  async function renewSession() {
    try {
      const { body } = await api('POST', '/session');
      const expires = Date.parse(body.expires_at);
      if (typeof body.token !== 'string' || !body.token || !expires) throw new Error('bad session answer');
      session.token = body.token;
      session.expires = expires;
      scheduleSessionRenewal();
    } catch (err) {
      // Keep the old token; try again while it is still valid. Once it expires, the next call
      // answers 401 and the card says to reopen the ticket.
      if (Date.now() + SESSION_RETRY_MS < session.expires) {
        renewTimer = setTimeout(renewSession, SESSION_RETRY_MS);
      }
    }
  }

  // --- Rendering -------------------------------------------------------------------------

  function render(state, children) {
    root.replaceChildren(...children.filter(Boolean));
    root.dataset.state = state;
    root.removeAttribute('aria-busy');
    exposed.state = state;
  }

  function renderLoading() {
    render('loading', [
      requesterHeader(requester),
      h('div', { class: 'zk-loading', 'data-testid': 'loading' },
        h('p', { class: 'zk-loading-text', role: 'status', text: t('loading') }),
        h('div', { class: 'zk-skeleton', 'aria-hidden': 'true' },
          ['zk-bone zk-bone--wide', 'zk-bone', 'zk-bone zk-bone--short', 'zk-bone zk-bone--wide', 'zk-bone']
            .map((c) => h('span', { class: c })))),
    ]);
    root.setAttribute('aria-busy', 'true');
  }

  // ERROR_TEXT names the agent's words for the server's error codes; the server's own message
  // (English, for whoever diagnoses it) follows as a detail.
  const ERROR_TEXT = { unavailable: 'error_unavailable', forbidden: 'error_forbidden', not_found: 'error_not_found' };

  function renderError(err) {
    let text;
    let detail = '';
    if (err.status === 401) text = t('session_expired');
    else if (err.code === 'timeout') text = t('error_timeout');
    else if (err.status === 0 && err.code === 'network') text = t('error_network');
    else {
      text = t(ERROR_TEXT[err.code] || 'error_generic');
      detail = err.message || '';
    }
    const box = message(text, 'error', true);
    if (detail) box.insertBefore(h('p', { class: 'zk-detail', text: t('error_detail', { detail }) }), box.lastChild);
    render('error', [requesterHeader(requester), box]);
  }

  function renderCard(data) {
    const klaviyo = data.klaviyo;
    const profile = klaviyo === 'found' && data.profile && typeof data.profile === 'object' ? data.profile : null;
    let missing = arrayOf(data.unavailable).filter((s) => typeof s === 'string');
    // "unavailable" (or a "found" without its profile): the profile is missing, say so.
    if (!profile && klaviyo !== 'not_found' && !missing.includes('profile')) {
      missing = ['profile', ...missing];
    }
    let state;
    if (klaviyo === 'not_found') state = 'empty';
    else if (profile && missing.length === 0) state = 'found';
    else state = 'partial';

    const who = Object.assign({}, requester || {}, pickDefined(data.requester || {}));
    const parts = [requesterHeader(who)];
    // The card is the saved ticket's requester's; an unsaved change of requester shows once
    // the ticket is saved.
    const shownId = data.requester && idOf(data.requester.id);
    if (requester && requester.id && shownId && String(shownId) !== String(requester.id)) {
      parts.push(h('div', { class: 'zk-message zk-message--info', role: 'status', 'data-testid': 'requester-changed' },
        h('p', { text: t('requester_changed') })));
    }
    if (missing.length) parts.push(notice(missing));

    if (profile) {
      parts.push(profileSection(profile));
      parts.push(consentSection(profile));
      parts.push(predictionsSection(profile.predictions));
      if (!missing.includes('activity')) parts.push(activitySection(arrayOf(data.activity)));
      if (!missing.includes('segments')) parts.push(chipSection('segments', arrayOf(data.segments)));
      if (!missing.includes('lists')) parts.push(chipSection('lists', arrayOf(data.lists)));
    } else if (klaviyo === 'not_found') {
      const create = safeURL(data.create_profile_url);
      parts.push(h('div', { class: 'zk-message zk-message--info', 'data-testid': 'message' },
        h('p', { class: 'zk-message-title', text: t('not_found') }),
        create && h('p', {},
          h('a', { href: create, target: '_blank', rel: 'noopener', 'data-testid': 'create-profile', text: t('create_profile') }))));
    }
    if (data.support && typeof data.support === 'object') parts.push(supportSection(data.support));
    render(state, parts);
  }

  function requesterHeader(who) {
    const el = h('header', { class: 'zk-requester', 'data-testid': 'requester' });
    if (!who) return el;
    el.append(
      h('p', { class: 'zk-requester-name', text: who.name || who.email || who.phone || '' }),
      who.email && h('p', { class: 'zk-requester-line', text: who.email }),
      who.phone && h('p', { class: 'zk-requester-line', text: who.phone }));
    return el;
  }

  function notice(missing) {
    const names = SECTION_ORDER.filter((s) => missing.includes(s)).map((s) => t('section_' + s));
    const fromKlaviyo = missing.some((s) => KLAVIYO_SECTIONS.includes(s));
    return h('div', { class: 'zk-notice', role: 'status', 'data-testid': 'notice' },
      h('p', { text: t(fromKlaviyo ? 'notice_klaviyo' : 'notice_other', { sections: listOf(names) }) }),
      retryButton());
  }

  function message(text, kind, retry) {
    return h('div', { class: 'zk-message zk-message--' + kind, role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'message' },
      h('p', { text }),
      retry && retryButton());
  }

  function retryButton() {
    return h('button', { type: 'button', class: 'zk-button', 'data-testid': 'retry', onclick: () => load({ quiet: false }), text: t('retry') });
  }

  function section(name, heading, ...body) {
    return h('section', { class: 'zk-section', 'data-testid': name },
      h('h2', { class: 'zk-heading', text: heading }), ...body);
  }

  function rows(pairs) {
    const items = pairs.filter(([, v]) => v != null && v !== '');
    if (!items.length) return null;
    return h('dl', { class: 'zk-rows' },
      items.map(([k, v]) => h('div', { class: 'zk-row' }, h('dt', { text: k }), h('dd', {}, v))));
  }

  function profileSection(p) {
    const loc = p.location || {};
    const place = [loc.city, loc.region, loc.country].filter((s) => typeof s === 'string' && s).join(', ');
    const url = safeURL(p.url);
    return section('profile', t('profile_heading'),
      rows([
        [t('name'), text(p.name)],
        [t('email'), text(p.email)],
        [t('phone'), text(p.phone)],
        [t('organization'), text(p.organization)],
        [t('location'), place],
      ]),
      url && h('p', { class: 'zk-link-line' },
        h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'open-in-klaviyo', text: t('open_in_klaviyo') })));
  }

  function consentSection(p) {
    const items = [['consent_email', p.email_consent], ['consent_sms', p.sms_consent]]
      .filter(([, c]) => c && typeof c === 'object');
    if (!items.length) return null;
    return section('consent', t('consent_heading'),
      rows(items.map(([label, c]) => [t(label), consentValue(c)])));
  }

  function consentValue(c) {
    const known = { subscribed: 'consent_subscribed', unsubscribed: 'consent_unsubscribed', never: 'consent_never' };
    const state = known[c.state] ? c.state : 'unknown';
    const wrap = h('span', { class: 'zk-consent' },
      h('span', { class: 'zk-badge zk-badge--' + state, text: t(known[c.state] || 'consent_unknown') }));
    const at = dateOf(c.at);
    if (at && state !== 'never') {
      wrap.append(' ', h('time', { class: 'zk-muted', datetime: c.at, title: fullDate(at), text: t('consent_since', { date: shortDate(at) }) }));
    }
    if (state === 'subscribed' && c.can_receive === false) {
      wrap.append(h('span', { class: 'zk-muted zk-block', text: t('consent_cannot_receive') }));
    }
    return wrap;
  }

  function predictionsSection(pr) {
    if (!pr || typeof pr !== 'object') return null;
    const list = rows([
      [t('predicted_clv'), money(pr.predicted_clv)],
      [t('historic_clv'), money(pr.historic_clv)],
      [t('churn_risk'), churn(pr.churn_probability)],
      [t('expected_next_order'), calendarDate(pr.expected_next_order)],
      [t('average_order_value'), money(pr.average_order_value)],
    ]);
    return list && section('predictions', t('predictions_heading'), list);
  }

  function churn(p) {
    if (typeof p !== 'number' || !isFinite(p)) return null;
    // Klaviyo gives a probability; the thirds are ours, to put a word and a colour on it.
    const level = p < 1 / 3 ? 'low' : p < 2 / 3 ? 'medium' : 'high';
    return h('span', { class: 'zk-churn zk-churn--' + level,
      text: t('churn_value', { level: t('churn_' + level), percent: numberFormat({ style: 'percent', maximumFractionDigits: 0 }).format(p) }) });
  }

  function activitySection(items) {
    const events = items.filter((e) => e && typeof e === 'object');
    if (!events.length) return section('activity', t('activity_heading'), h('p', { class: 'zk-muted', text: t('activity_none') }));
    return section('activity', t('activity_heading'),
      h('ol', { class: 'zk-activity' }, events.map((e) => {
        const at = dateOf(e.time);
        return h('li', { class: 'zk-event' },
          h('span', { class: 'zk-event-metric', text: text(e.metric) }),
          typeof e.value === 'number' && h('span', { class: 'zk-event-value', text: money(e.value) }),
          at && h('time', { class: 'zk-muted zk-event-time', datetime: e.time, title: fullDate(at), text: when(at) }));
      })));
  }

  function chipSection(name, items) {
    const names = items.map((x) => x && text(x.name)).filter(Boolean);
    return section(name, t(name + '_heading'), names.length
      ? h('ul', { class: 'zk-chips' }, names.map((n) => h('li', { class: 'zk-chip', text: n })))
      : h('p', { class: 'zk-muted', text: t(name + '_none') }));
  }

  function supportSection(s) {
    const count = (v) => (typeof v === 'number' ? numberFormat({}).format(v) : null);
    let last = null;
    const lr = s.last_resolved;
    if (lr && typeof lr === 'object' && lr.ticket_id != null) {
      const at = dateOf(lr.at);
      last = h('span', { class: 'zk-last-resolved' },
        ticketLink(lr.ticket_id),
        lr.subject ? ' ' + text(lr.subject) : '',
        at ? ' — ' : '',
        at && h('time', { datetime: lr.at, title: fullDate(at), text: relative(at) }));
    }
    const days = typeof s.recent_days === 'number' ? s.recent_days : 90;
    return section('support', t('support_heading'),
      rows([
        [t('support_open'), count(s.open)],
        [t('support_recent', { days }), count(s.recent)],
        [t('support_total'), count(s.total)],
        [t('support_last_resolved'), last],
      ]));
  }

  // ticketLink opens the ticket in the agent's workspace (ZAF routeTo) rather than a new tab.
  function ticketLink(id) {
    const label = t('support_ticket', { id });
    return h('a', { href: '#', class: 'zk-ticket', text: label, onclick: (ev) => {
      ev.preventDefault();
      client.invoke('routeTo', 'ticket', String(id)).catch(() => {});
    } });
  }

  // --- Size: tell Zendesk how tall the card is, so the sidebar shows it without a scrollbar.
  function observeSize() {
    let last = 0;
    const send = () => {
      const height = Math.ceil(root.getBoundingClientRect().height);
      if (!height || height === last) return;
      last = height;
      Promise.resolve(client.invoke('resize', { width: '100%', height: height + 'px' })).catch(() => {});
    };
    if ('ResizeObserver' in window) new ResizeObserver(send).observe(root);
    else window.addEventListener('load', send);
  }

  // --- Language and formats -------------------------------------------------------------

  function setLanguage(zendeskLocale) {
    let loc = typeof zendeskLocale === 'string' && zendeskLocale ? zendeskLocale : html.lang || 'en';
    try {
      loc = Intl.getCanonicalLocales(loc)[0] || 'en';
    } catch (err) {
      loc = 'en';
    }
    locale = loc;
    lang = pickLang(loc);
    html.lang = lang;
    exposed.lang = lang;
  }

  function pickLang(loc) {
    return typeof loc === 'string' && loc.toLowerCase().startsWith('es') ? 'es' : 'en';
  }

  function t(key, vars) {
    const table = MESSAGES[lang] || {};
    let s = table[key] != null ? table[key] : (MESSAGES.en || {})[key];
    if (s == null) s = key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (Object.prototype.hasOwnProperty.call(vars, k) ? String(vars[k]) : m));
    return s;
  }

  // intl makes an Intl formatter for the agent's locale, or for the page's language when the
  // browser does not know that locale.
  function intl(Format, opts) {
    try {
      return new Format(locale, opts);
    } catch (err) {
      return new Format(lang, opts);
    }
  }

  function numberFormat(opts) {
    return intl(Intl.NumberFormat, opts);
  }

  // money formats an amount with two decimals and no currency sign: Klaviyo's values are in
  // the account's currency, which its API does not name.
  function money(v) {
    if (typeof v !== 'number' || !isFinite(v)) return null;
    return numberFormat({ minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(v);
  }

  function dateFormat(opts) {
    return intl(Intl.DateTimeFormat, opts);
  }

  function shortDate(d) {
    return dateFormat({ day: 'numeric', month: 'short', year: 'numeric' }).format(d);
  }

  function fullDate(d) {
    return dateFormat({ dateStyle: 'medium', timeStyle: 'short' }).format(d);
  }

  // calendarDate formats a date without a time ("2026-12-10") as that day wherever the agent is.
  function calendarDate(s) {
    const m = typeof s === 'string' && /^(\d{4})-(\d{2})-(\d{2})/.exec(s);
    if (!m) return null;
    const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
    if (isNaN(d)) return null;
    return h('time', { datetime: m[0], text: dateFormat({ day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' }).format(d) });
  }

  function when(d) {
    return Math.abs(Date.now() - d.getTime()) < RELATIVE_ACTIVITY_MS ? relative(d) : shortDate(d);
  }

  function relative(d) {
    const diff = d.getTime() - Date.now();
    const abs = Math.abs(diff);
    const rtf = intl(Intl.RelativeTimeFormat, { numeric: 'auto' });
    const units = [['year', 365 * 864e5], ['month', 30 * 864e5], ['week', 7 * 864e5], ['day', 864e5], ['hour', 36e5], ['minute', 6e4]];
    for (const [unit, ms] of units) {
      if (abs >= ms) return rtf.format(Math.round(diff / ms), unit);
    }
    return rtf.format(0, 'second');
  }

  function listOf(items) {
    try {
      return new Intl.ListFormat(locale, { style: 'long', type: 'conjunction' }).format(items);
    } catch (err) {
      return items.join(', ');
    }
  }

  // --- Small helpers ---------------------------------------------------------------------

  // h builds an element. Props: class, text (textContent), on<event> (listener), anything else
  // an attribute. Children are nodes or strings (text nodes); null and false are skipped.
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c == null || c === false || c === '') continue;
      el.append(c);
    }
    return el;
  }

  function meta(name) {
    const el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute('content') || '' : '';
  }

  function schemeOf(v) {
    v = typeof v === 'string' ? v.toLowerCase() : '';
    return v === 'dark' || v === 'light' ? v : null;
  }

  function applyTheme() {
    const theme = zendeskScheme || (media && media.matches ? 'dark' : 'light');
    html.dataset.theme = theme;
    exposed.theme = theme;
  }

  function idOf(v) {
    if (typeof v === 'number' && isFinite(v) && v > 0) return String(v);
    if (typeof v === 'string' && /^\d+$/.test(v)) return v;
    return null;
  }

  function requesterOf(u) {
    if (!u || typeof u !== 'object') return null;
    let phone = text(u.phone);
    if (!phone && Array.isArray(u.identities)) {
      const id = u.identities.find((i) => i && i.type === 'phone_number' && i.value);
      if (id) phone = text(id.value);
    }
    return { id: idOf(u.id), name: text(u.name), email: text(u.email), phone };
  }

  function pickDefined(o) {
    const out = {};
    for (const k of ['name', 'email', 'phone']) if (typeof o[k] === 'string' && o[k]) out[k] = o[k];
    return out;
  }

  function text(v) {
    return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
  }

  function arrayOf(v) {
    return Array.isArray(v) ? v : [];
  }

  function dateOf(s) {
    if (typeof s !== 'string' || !s) return null;
    const d = new Date(s);
    return isNaN(d) ? null : d;
  }

  // safeURL accepts only http(s) links, so a javascript: URL in data can never be clicked.
  function safeURL(u) {
    if (typeof u !== 'string' || !u) return null;
    try {
      const url = new URL(u, location.href);
      return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
    } catch (err) {
      return null;
    }
  }
})();
