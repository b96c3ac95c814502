// The marketers' /reports page: filters, a trend line chart, two cohort heat-map triangles,
// the segments table, tables beneath each chart, and a CSV download per report, read from
// zenklav's reports API with the marketer's token. No framework; charts by Apache ECharts
// (charts.js, window.ZenklavCharts). Data reaches the page through textContent and canvas
// only, never as markup.
(function () {
  'use strict';

  var TOKEN_KEY = 'zenklav.reports.token';
  var KINDS = ['trends', 'resolution-cohorts', 'repeat-cohorts', 'segments'];
  var WITHIN = [['closed_1d', 1], ['closed_3d', 3], ['closed_7d', 7], ['closed_14d', 14], ['closed_30d', 30]];

  var root = document.querySelector('[data-testid="reports"]');
  var filters = document.querySelector('[data-testid="filters"]');
  var tokenForm = document.querySelector('[data-testid="token-form"]');
  var tokenInput = tokenForm.elements.token;
  var alertBox = document.querySelector('[data-testid="alert"]');
  var whoBox = document.querySelector('[data-testid="who"]');
  var bySelect = document.querySelector('[data-testid="by"]');
  var measureSelect = document.querySelector('[data-testid="measure"]');
  var kindSelect = document.querySelector('[data-testid="segment-kind"]');

  var num = new Intl.NumberFormat('en');
  var dec = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });
  var pct = new Intl.NumberFormat('en', { style: 'percent', maximumFractionDigits: 1 });

  // state is read by the browser test: the page's, each report's (idle, loading, ready,
  // empty, error), and whether each chart has drawn its data.
  var state = { state: 'idle', reports: {}, drawn: {}, downloads: 0 };
  window.zenklavReports = state;

  var token = '';
  var charts = {};
  var rows = {};
  var seq = {};

  // ---- token ---------------------------------------------------------------------------

  // takeToken reads the #token= fragment that `zenklav token` prints, keeps it for this tab
  // only, and takes it out of the URL (and so out of history and bookmarks).
  function takeToken() {
    var m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      try { sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1])); } catch (e) { /* private mode */ }
      token = decodeURIComponent(m[1]);
      history.replaceState(null, '', location.pathname + location.search);
      return;
    }
    try { token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { token = ''; }
  }

  function setToken(t) {
    token = t.trim();
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* private mode */ }
    showClaims();
  }

  // claims decodes the token's payload, for display only: the server checks the signature.
  function claims() {
    var parts = token.split('.');
    if (parts.length !== 3) return null;
    try {
      var b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
      while (b64.length % 4) b64 += '=';
      var bin = atob(b64);
      var bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      return null;
    }
  }

  function tenantsOf(c) {
    if (!c) return [];
    var t = c.tenants || c.connections || (c.tenant ? [c.tenant] : []);
    return Array.isArray(t) ? t.filter(function (x) { return typeof x === 'string'; }) : [];
  }

  function showClaims() {
    var c = claims();
    var sel = filters.elements.connection;
    var keep = sel.value;
    while (sel.options.length > 1) sel.remove(1);
    tenantsOf(c).forEach(function (t) {
      var o = document.createElement('option');
      o.value = t;
      o.textContent = t;
      sel.appendChild(o);
    });
    sel.value = keep;
    if (sel.value !== keep) sel.value = '';
    var bits = [];
    if (c && c.role) bits.push(String(c.role));
    if (c && typeof c.exp === 'number') {
      bits.push('until ' + new Date(c.exp * 1000).toLocaleString('en', { dateStyle: 'medium', timeStyle: 'short' }));
    }
    whoBox.textContent = token ? (bits.length ? bits.join(' · ') : 'token set') : 'no token';
  }

  // ---- filters -------------------------------------------------------------------------

  function isoDate(d) {
    function two(n) { return (n < 10 ? '0' : '') + n; }
    return d.getFullYear() + '-' + two(d.getMonth() + 1) + '-' + two(d.getDate());
  }

  function initFilters() {
    var browserTZ = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
    var zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
    if (zones.indexOf('UTC') < 0) zones = ['UTC'].concat(zones);
    if (zones.indexOf(browserTZ) < 0) zones = [browserTZ].concat(zones);
    var sel = filters.elements.tz;
    zones.forEach(function (z) {
      var o = document.createElement('option');
      o.value = z;
      o.textContent = z;
      sel.appendChild(o);
    });
    sel.value = browserTZ;
    var today = new Date();
    var from = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 89);
    filters.elements.to.value = isoDate(today);
    filters.elements.from.value = isoDate(from);
    // A link may preset the filters: /reports?from=2026-01-01&interval=month#token=…
    var q = new URLSearchParams(location.search);
    ['connection', 'brand', 'channel', 'tag', 'from', 'to', 'interval', 'tz'].forEach(function (name) {
      if (q.has(name)) filters.elements[name].value = q.get(name);
    });
    if (q.has('by')) bySelect.value = q.get('by');
    if (q.has('kind')) kindSelect.value = q.get('kind');
  }

  // params are the API's query parameters for one report.
  function params(kind, extra) {
    var p = new URLSearchParams();
    ['connection', 'brand', 'channel', 'tag', 'from', 'to', 'interval', 'tz'].forEach(function (name) {
      var v = filters.elements[name].value.trim();
      if (v !== '') p.set(name, v);
    });
    if (kind === 'trends' && bySelect.value) p.set('by', bySelect.value);
    if (kind === 'segments') p.set('kind', kindSelect.value);
    Object.keys(extra || {}).forEach(function (k) { p.set(k, extra[k]); });
    return p;
  }

  function checkFilters() {
    var f = filters.elements;
    if (f.brand.value.trim() !== '' && !/^[0-9]+$/.test(f.brand.value.trim())) return 'The brand id is a number (Zendesk\'s brand id).';
    if (!f.from.value || !f.to.value) return 'Choose the first and last day of the reports.';
    if (f.to.value < f.from.value) return 'The last day is before the first.';
    return '';
  }

  // ---- page and report states ----------------------------------------------------------

  function showAlert(msg) {
    alertBox.textContent = msg;
    alertBox.hidden = !msg;
  }

  function setPageState(s) {
    state.state = s;
    root.dataset.state = s;
  }

  function section(kind) { return document.querySelector('.rp-report[data-report="' + kind + '"]'); }

  function setReportState(kind, s, msg) {
    var sec = section(kind);
    state.reports[kind] = s;
    sec.dataset.state = s;
    sec.setAttribute('aria-busy', s === 'loading' ? 'true' : 'false');
    sec.querySelector('.rp-status').textContent = msg || '';
    var all = KINDS.map(function (k) { return state.reports[k]; });
    if (all.some(function (x) { return x === 'loading'; })) setPageState('loading');
    else if (state.state !== 'unauthorized') setPageState('ready');
  }

  // apiError is an error from the reports API, with its status and the server's message.
  function apiError(status, code, message) {
    var e = new Error(message || ('the server answered ' + status));
    e.status = status;
    e.code = code || '';
    return e;
  }

  function request(kind, extra, accept) {
    if (!token) return Promise.reject(apiError(401, 'unauthorized', 'no token'));
    return fetch('/api/v1/reports/' + encodeURIComponent(kind) + '?' + params(kind, extra).toString(), {
      headers: { Authorization: 'Bearer ' + token, Accept: accept },
      cache: 'no-store',
      credentials: 'omit',
    }).then(function (res) {
      if (res.ok) return res;
      return res.json().then(function (body) {
        var err = body && body.error ? body.error : {};
        throw apiError(res.status, err.code, err.message);
      }, function () {
        throw apiError(res.status, '', 'the server answered ' + res.status + ' ' + res.statusText);
      });
    }, function (e) {
      throw apiError(0, 'unavailable', 'zenklav did not answer (' + e.message + ')');
    });
  }

  function failed(kind, err) {
    if (err.status === 401) {
      setPageState('unauthorized');
      showAlert('Your token is missing, expired or not valid. Ask your zenklav operator for a new one (zenklav token --role marketer --tenant …) and paste it above.');
      tokenInput.focus();
      setReportState(kind, 'error', 'Not shown: the token was refused.');
      return;
    }
    var msg = err.status === 403 ? 'Not allowed: ' + err.message
      : err.status === 400 ? 'The filters were refused: ' + err.message
      : err.status >= 500 || err.status === 0 ? 'The report could not be made right now: ' + err.message + '. Try again in a moment.'
      : err.message;
    setReportState(kind, 'error', msg);
  }

  function load(kind) {
    var mine = seq[kind] = (seq[kind] || 0) + 1;
    setReportState(kind, 'loading', 'Loading…');
    return request(kind, null, 'application/json').then(function (res) {
      return res.json();
    }).then(function (body) {
      if (seq[kind] !== mine) return;
      rows[kind] = Array.isArray(body.rows) ? body.rows : [];
      render(kind);
    }).catch(function (err) {
      if (seq[kind] !== mine) return;
      rows[kind] = [];
      render(kind);
      failed(kind, err);
    });
  }

  function loadAll() {
    var bad = checkFilters();
    if (bad) { showAlert(bad); return; }
    if (!token) {
      setPageState('unauthorized');
      showAlert('Paste your access token above: `zenklav token --role marketer --tenant …` prints a link with it.');
      tokenInput.focus();
      return;
    }
    showAlert('');
    setPageState('loading');
    KINDS.forEach(load);
  }

  // ---- CSV -----------------------------------------------------------------------------

  // download fetches the report as CSV with the token (a plain link cannot send it) and
  // saves it as a file.
  function download(kind, button) {
    var bad = checkFilters();
    if (bad) { showAlert(bad); return; }
    button.disabled = true;
    var name = 'zenklav-' + kind + '.csv';
    request(kind, { format: 'csv' }, 'text/csv').then(function (res) {
      // The API names the file (kind and dates) in Content-Disposition.
      var m = /filename="?([^";]+)"?/.exec(res.headers.get('Content-Disposition') || '');
      if (m) name = m[1];
      return res.blob();
    }).then(function (blob) {
      var url = URL.createObjectURL(blob);
      var a = document.createElement('a');
      a.href = url;
      a.download = name;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
      state.downloads++;
    }).catch(function (err) {
      failed(kind, err);
    }).then(function () {
      button.disabled = false;
    });
  }

  // ---- rendering -----------------------------------------------------------------------

  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function theme() {
    return {
      text: cssVar('--text'), muted: cssVar('--muted'), border: cssVar('--border'),
      surface: cssVar('--surface'), low: cssVar('--heat-low'), high: cssVar('--heat-high'),
      series: [cssVar('--s1'), cssVar('--s2'), cssVar('--s3'), cssVar('--s4'), cssVar('--s5'), cssVar('--s6'), cssVar('--s7'), cssVar('--s8')],
    };
  }

  function chartFor(kind) {
    var el = section(kind).querySelector('.rp-chart');
    if (!el || !window.ZenklavCharts) return null;
    if (!charts[kind]) {
      charts[kind] = window.ZenklavCharts.init(el, null, { renderer: 'canvas' });
      // ECharts draws on a later frame: drawn says when the canvas shows the data.
      charts[kind].on('finished', function () { state.drawn[kind] = true; });
    }
    state.drawn[kind] = false;
    return charts[kind];
  }

  // tooltip is drawn on the canvas (richText), not as HTML: no markup built from data.
  function tooltip(t, trigger) {
    return { trigger: trigger, renderMode: 'richText', backgroundColor: t.surface, borderColor: t.border, textStyle: { color: t.text } };
  }

  function axis(t, data, name) {
    return {
      type: 'category', data: data, name: name, nameLocation: 'middle', nameGap: 28,
      nameTextStyle: { color: t.muted },
      axisLabel: { color: t.muted }, axisLine: { lineStyle: { color: t.border } },
    };
  }

  function render(kind) {
    var r = rows[kind] || [];
    var sec = section(kind);
    var table = sec.querySelector('table');
    var box = sec.querySelector('.rp-chart');
    if (box) box.hidden = r.length === 0;
    // No rows, no chart: its box is hidden, and a chart cannot size itself in a hidden box.
    var chart = r.length ? chartFor(kind) : null;
    if (kind === 'trends') renderTrends(r, chart, table);
    if (kind === 'resolution-cohorts') renderResolution(r, chart, table);
    if (kind === 'repeat-cohorts') renderRepeat(r, chart, table);
    if (kind === 'segments') renderSegments(r, table);
    setReportState(kind, r.length ? 'ready' : 'empty', r.length ? '' : 'No tickets match these filters in this date range.');
    if (chart && r.length) chart.resize();
  }

  function uniq(list) {
    var seen = {};
    return list.filter(function (x) { if (seen[x]) return false; seen[x] = true; return true; });
  }

  function renderTrends(r, chart, table) {
    var broken = r.some(function (x) { return x.key; });
    document.querySelector('.rp-measure').hidden = !broken;
    var periods = uniq(r.map(function (x) { return x.period; })).sort();
    var t = theme();
    var series;
    if (!broken) {
      series = [['opened', 'Opened'], ['resolved', 'Resolved'], ['backlog', 'Open at period end']].map(function (m) {
        var by = {};
        r.forEach(function (x) { by[x.period] = x[m[0]]; });
        return { name: m[1], type: 'line', data: periods.map(function (p) { return by[p] == null ? 0 : by[p]; }), symbolSize: 5 };
      });
    } else {
      var m = measureSelect.value;
      var keys = uniq(r.map(function (x) { return x.key || '(none)'; })).sort();
      series = keys.map(function (k) {
        var by = {};
        r.forEach(function (x) { if ((x.key || '(none)') === k) by[x.period] = x[m]; });
        return { name: k, type: 'line', data: periods.map(function (p) { return by[p] == null ? 0 : by[p]; }), symbolSize: 5 };
      });
    }
    if (chart) {
      chart.setOption({
        animation: false,
        color: t.series,
        textStyle: { color: t.text },
        tooltip: tooltip(t, 'axis'),
        legend: { type: 'scroll', top: 0, textStyle: { color: t.text }, pageTextStyle: { color: t.muted } },
        grid: { left: 56, right: 24, top: 40, bottom: 48 },
        xAxis: axis(t, periods, ''),
        yAxis: { type: 'value', minInterval: 1, axisLabel: { color: t.muted }, splitLine: { lineStyle: { color: t.border } } },
        series: series,
      }, true);
    }
    var head = ['Period'].concat(broken ? [bySelect.options[bySelect.selectedIndex].textContent] : [], ['Opened', 'Resolved', 'Open at period end']);
    fillTable(table, head, r.map(function (x) {
      return [x.period].concat(broken ? [x.key || '(none)'] : [], [num.format(x.opened), num.format(x.resolved), num.format(x.backlog)]);
    }));
  }

  // mature says whether a cohort's tickets have all had `days` days to close: until then a
  // cell of the triangle would understate, so the chart leaves it out (the table keeps it).
  function mature(cohort, days) {
    var d = new Date(cohort + 'T00:00:00');
    d.setDate(d.getDate() + days);
    return d <= new Date();
  }

  function heatmap(chart, xs, ys, cells, t, xName) {
    if (!chart) return;
    chart.setOption({
      animation: false,
      textStyle: { color: t.text },
      tooltip: tooltip(t, 'item'),
      grid: { left: 96, right: 24, top: 16, bottom: 88 },
      xAxis: axis(t, xs, xName),
      yAxis: Object.assign(axis(t, ys, ''), { inverse: true, nameGap: 0 }),
      visualMap: {
        min: 0, max: 100, calculable: false, orient: 'horizontal', left: 'center', bottom: 0,
        itemHeight: 160, text: ['100%', '0%'], textStyle: { color: t.muted },
        inRange: { color: [t.low, t.high] },
      },
      series: [{
        type: 'heatmap', data: cells,
        label: { show: ys.length <= 26 && xs.length <= 16, color: t.text, formatter: function (p) { return Math.round(p.value[2]) + '%'; } },
        tooltip: { formatter: function (p) { return ys[p.value[1]] + ' · ' + xs[p.value[0]] + ': ' + dec.format(p.value[2]) + '%'; } },
        emphasis: { itemStyle: { borderColor: t.text, borderWidth: 1 } },
      }],
    }, true);
  }

  function renderResolution(r, chart, table) {
    var t = theme();
    var xs = WITHIN.map(function (w) { return 'within ' + w[1] + (w[1] === 1 ? ' day' : ' days'); });
    var ys = r.map(function (x) { return x.cohort; });
    var cells = [];
    r.forEach(function (x, yi) {
      WITHIN.forEach(function (w, xi) {
        if (mature(x.cohort, w[1])) cells.push([xi, yi, 100 * (x[w[0]] || 0)]);
      });
    });
    heatmap(chart, xs, ys, cells, t, 'closed');
    function hours(h) { return h == null ? '—' : dec.format(h); }
    fillTable(table, ['Cohort', 'Tickets', '≤ 1 day', '≤ 3 days', '≤ 7 days', '≤ 14 days', '≤ 30 days', 'Median hours', 'P90 hours', 'Reopened'],
      r.map(function (x) {
        return [x.cohort, num.format(x.tickets)].concat(WITHIN.map(function (w) { return pct.format(x[w[0]] || 0); }),
          [hours(x.median_hours), hours(x.p90_hours), pct.format(x.reopen_rate || 0)]);
      }));
  }

  function renderRepeat(r, chart, table) {
    var t = theme();
    var ys = uniq(r.map(function (x) { return x.cohort; })).sort();
    var maxOff = r.reduce(function (m, x) { return Math.max(m, x.offset); }, 0);
    var xs = [];
    for (var i = 0; i <= maxOff; i++) xs.push(String(i));
    var unit = filters.elements.interval.value;
    var cells = r.map(function (x) { return [x.offset, ys.indexOf(x.cohort), 100 * (x.share || 0)]; });
    heatmap(chart, xs, ys, cells, t, unit + 's after the first ticket');
    var customers = {};
    var share = {};
    r.forEach(function (x) { customers[x.cohort] = x.customers; share[x.cohort + '|' + x.offset] = x; });
    fillTable(table, ['Cohort', 'Customers'].concat(xs.map(function (o) { return '+' + o; })),
      ys.map(function (c) {
        return [c, num.format(customers[c] || 0)].concat(xs.map(function (o) {
          var cell = share[c + '|' + o];
          return cell ? pct.format(cell.share || 0) : '';
        }));
      }));
  }

  function renderSegments(r, table) {
    fillTable(table, [kindSelect.value === 'list' ? 'List' : 'Segment', 'Customers', 'Opened', 'Resolved', 'Median hours to close', 'Reopened'],
      r.map(function (x) {
        return [x.segment, num.format(x.customers), num.format(x.opened), num.format(x.resolved),
          x.median_hours == null ? '—' : dec.format(x.median_hours), pct.format(x.reopen_rate || 0)];
      }));
  }

  // fillTable writes head and body with textContent: data never becomes markup.
  function fillTable(table, head, body) {
    while (table.firstChild) table.removeChild(table.firstChild);
    if (!body.length) return;
    var thead = table.createTHead().insertRow();
    head.forEach(function (h) {
      var th = document.createElement('th');
      th.scope = 'col';
      th.textContent = h;
      thead.appendChild(th);
    });
    var tbody = table.createTBody();
    body.forEach(function (cells) {
      var tr = tbody.insertRow();
      cells.forEach(function (c, i) {
        var td = document.createElement(i === 0 ? 'th' : 'td');
        if (i === 0) td.scope = 'row';
        td.textContent = c;
        tr.appendChild(td);
      });
    });
  }

  // ---- wiring --------------------------------------------------------------------------

  takeToken();
  showClaims(); // first: the connections it lists may be chosen by the URL
  initFilters();
  if (token) tokenInput.value = token;

  tokenForm.addEventListener('submit', function (e) {
    e.preventDefault();
    setToken(tokenInput.value);
    loadAll();
  });
  filters.addEventListener('submit', function (e) {
    e.preventDefault();
    loadAll();
  });
  bySelect.addEventListener('change', function () { if (token) load('trends'); });
  measureSelect.addEventListener('change', function () { render('trends'); });
  kindSelect.addEventListener('change', function () { if (token) load('segments'); });
  KINDS.forEach(function (kind) {
    var button = document.querySelector('[data-testid="csv-' + kind + '"]');
    button.addEventListener('click', function () { download(kind, button); });
  });
  window.addEventListener('resize', function () {
    Object.keys(charts).forEach(function (k) { charts[k].resize(); });
  });
  // The charts take their colours from the style sheet: redraw when the scheme changes.
  if (window.matchMedia) {
    var mq = window.matchMedia('(prefers-color-scheme: dark)');
    var redraw = function () { KINDS.forEach(function (k) { if (rows[k]) render(k); }); };
    if (mq.addEventListener) mq.addEventListener('change', redraw);
  }

  loadAll();
}());
