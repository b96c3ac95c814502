// The sandbox phone: shows a customer's SMS thread, polls it for the brand's replies, and
// sends the customer's texts. Plain DOM, textContent only: the thread shows what anyone typed.
(function () {
  'use strict';
  var state = JSON.parse(document.getElementById('phone-state').textContent);
  var thread = document.getElementById('thread');
  var customer = document.getElementById('customer');
  var form = document.getElementById('text-form');
  var body = document.getElementById('text-body');
  var send = document.getElementById('text-send');
  var status = document.getElementById('text-status');
  var shown = '';

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function renderCustomer(v) {
    customer.textContent = '';
    var c = v.customer;
    if (!c) {
      customer.appendChild(el('strong', '', v.phone || 'Pick or type a number'));
      if (v.phone) customer.appendChild(document.createTextNode(': no profile yet; the first text makes one'));
      return;
    }
    customer.appendChild(el('strong', '', c.name || c.phone));
    customer.appendChild(document.createTextNode((c.name ? ' ' + c.phone : '') + (c.email ? ' · ' + c.email : '') + ' · SMS '));
    customer.appendChild(el('span', 'consent consent-' + c.consent, c.consent));
  }

  function render(v) {
    var key = JSON.stringify([v.customer, v.messages]);
    if (key === shown) return;
    shown = key;
    renderCustomer(v);
    var atBottom = thread.scrollTop + thread.clientHeight >= thread.scrollHeight - 8;
    thread.textContent = '';
    if (!v.messages.length) thread.appendChild(el('li', 'empty muted', 'No texts yet.'));
    v.messages.forEach(function (m) {
      var li = el('li', 'msg ' + (m.inbound ? 'in' : 'out'));
      li.dataset.direction = m.inbound ? 'customer' : 'brand';
      li.appendChild(el('span', 'body', m.body));
      var t = el('time', '', new Date(m.time).toLocaleTimeString());
      t.dateTime = m.time;
      li.appendChild(t);
      thread.appendChild(li);
    });
    if (atBottom) thread.scrollTop = thread.scrollHeight;
  }

  function refresh() {
    if (!state.phone) return Promise.resolve();
    return fetch('/sandbox/phone/thread.json?phone=' + encodeURIComponent(state.phone), { cache: 'no-store' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (v) { if (v) render(v); })
      .catch(function () { /* the next poll tries again */ });
  }

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    if (!body.value.trim()) return;
    send.disabled = true;
    status.className = 'status';
    status.textContent = 'Sending…';
    fetch(form.action, {
      method: 'POST',
      headers: { 'Accept': 'application/json' },
      body: new URLSearchParams(new FormData(form)),
    }).then(function (r) {
      return r.json().then(function (v) {
        if (!r.ok) throw new Error(v.error || (v.errors && v.errors[0] && v.errors[0].detail) || r.statusText);
        body.value = '';
        status.className = 'status ok';
        status.textContent = 'Sent.';
      });
    }).catch(function (e) {
      status.textContent = 'Not delivered to zenklav: ' + e.message;
    }).then(function () {
      send.disabled = false;
      body.focus();
      return refresh();
    });
  });
  // Enter sends, as on a phone's keyboard; Shift+Enter starts a new line.
  body.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });

  render(state);
  thread.scrollTop = thread.scrollHeight;
  setInterval(refresh, 1000);
})();
