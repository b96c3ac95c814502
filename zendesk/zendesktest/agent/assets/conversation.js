// conversation.js keeps the simulator's pages current while zenklav writes to the account: on
// a ticket page it polls the ticket's comments and sends the reply box as the agent; on the
// index it polls the ticket list, so a ticket opened from a text shows up. Plain DOM,
// textContent only: comments hold what customers typed.
(function () {
  'use strict';

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function poll(url, render) {
    var shown = '';
    function once() {
      return fetch(url, { cache: 'no-store' })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (v) {
          if (!v) return;
          var key = JSON.stringify(v);
          if (key !== shown) { shown = key; render(v); }
        })
        .catch(function () { /* the next poll tries again */ });
    }
    setInterval(once, 1000);
    return once;
  }

  function renderComments(list, v) {
    list.textContent = '';
    if (!v.comments.length) list.appendChild(el('li', 'empty', 'No comments yet.'));
    v.comments.forEach(function (c) {
      var li = el('li', 'comment ' + (c.public ? 'public' : 'internal'));
      li.dataset.public = String(c.public);
      var meta = el('p', 'comment-meta');
      meta.appendChild(el('strong', '', c.author));
      meta.appendChild(el('span', 'badge', c.public ? 'Public reply' : 'Internal note'));
      var t = el('time', '', new Date(c.time).toLocaleString());
      t.dateTime = c.time;
      meta.appendChild(t);
      li.appendChild(meta);
      li.appendChild(el('div', 'comment-body', c.body));
      list.appendChild(li);
    });
  }

  function ticketPage(section) {
    var list = document.getElementById('comments');
    var refresh = poll('/agent/tickets/' + section.dataset.ticket + '/comments.json', function (v) { renderComments(list, v); });
    var form = document.getElementById('reply-form');
    if (!form) return;
    var body = document.getElementById('reply-body');
    var submit = document.getElementById('reply-submit');
    var status = document.getElementById('reply-status');
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (!body.value.trim()) return;
      submit.disabled = true;
      status.className = 'reply-status';
      status.textContent = 'Sending…';
      fetch(form.action, { method: 'POST', headers: { 'Accept': 'application/json' }, body: new URLSearchParams(new FormData(form)) })
        .then(function (r) {
          return r.json().then(function (v) {
            if (!r.ok) throw new Error(v.error || r.statusText);
            body.value = '';
            status.textContent = v.public ? 'Reply sent.' : 'Note added.';
          });
        })
        .catch(function (e) {
          status.className = 'reply-status error';
          status.textContent = 'Not added: ' + e.message;
        })
        .then(function () {
          submit.disabled = false;
          return refresh();
        });
    });
  }

  function indexPage(tbody) {
    poll('/agent/tickets.json', function (tickets) {
      tbody.textContent = '';
      tickets.forEach(function (t) {
        var tr = el('tr');
        tr.dataset.ticket = String(t.id);
        tr.appendChild(el('td', '', String(t.id)));
        var subject = el('td');
        var a = el('a', '', t.subject || '(no subject)');
        a.href = '/agent/tickets/' + t.id;
        subject.appendChild(a);
        if (t.sms) {
          subject.appendChild(document.createTextNode(' '));
          subject.appendChild(el('span', 'channel-sms', 'SMS'));
        }
        tr.appendChild(subject);
        var status = el('td');
        status.appendChild(el('span', 'status status-' + t.status, t.status));
        tr.appendChild(status);
        tr.appendChild(el('td', '', t.requester));
        var variants = el('td', 'variants');
        [['dark', '?theme=dark'], ['es', '?locale=es'], ['as new', '?new=1']].forEach(function (v) {
          var l = el('a', '', v[0]);
          l.href = '/agent/tickets/' + t.id + v[1];
          variants.appendChild(l);
          variants.appendChild(document.createTextNode(' '));
        });
        tr.appendChild(variants);
        tbody.appendChild(tr);
      });
    });
  }

  var section = document.getElementById('conversation');
  if (section) ticketPage(section);
  var tbody = document.getElementById('tickets');
  if (tbody) indexPage(tbody);
})();
