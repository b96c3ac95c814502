// zaf-host.js plays Zendesk's side of the Zendesk App Framework (ZAF) SDK's postMessage
// protocol on the simulator's ticket page. It loads the app as Zendesk does for an app
// with signed URLs (the page's form POSTs the ZAF JWT into the app's iframe), registers
// the app when its SDK shakes hands, answers get, set and invoke, records event
// subscriptions, and fails client.request, which the simulator does not proxy.
//
// Every message is a JSON string. Only messages from the app's iframe window and the
// app's origin are read; replies go to that window with the app's origin as targetOrigin.
// Tests read and drive the page through window.zafHost.
(function () {
  'use strict';

  var config = JSON.parse(document.getElementById('zaf-host-config').textContent);
  var iframe = document.getElementById('app-iframe');
  var form = document.getElementById('app-form');
  var notifications = document.getElementById('app-notifications');

  var host = {
    appGuid: config.appGuid || null,
    appOrigin: config.appOrigin || null,
    colorScheme: config.colorScheme,
    data: config.data, // the tree get answers from: ticket, currentUser, colorScheme, …
    log: [], // every message read ({dir: 'in'}) or sent ({dir: 'out'}), parsed, in order
    rejected: [], // messages not read: {reason, origin, data}
    subscriptions: {}, // event name -> subscriber count, from iframe.on: and iframe.off:
    registered: false, // whether app.registered was sent
    registrations: 0, // how many handshakes were answered
    lastResize: null, // the last resize the app invoked: {width, height} as it sent them
    notifications: [], // the app's notify invokes: {message, kind}
    routes: [], // the app's routeTo invokes: their arguments
    trigger: trigger,
    setColorScheme: setColorScheme,
    lookup: lookup
  };
  window.zafHost = host;

  var hasOwn = Object.prototype.hasOwnProperty;

  // lookup resolves a ZAF path such as "ticket.requester.email" or
  // "ticket.requester.identities.0.value" in host.data.
  function lookup(path) {
    var value = host.data;
    var parts = String(path).split('.');
    for (var i = 0; i < parts.length; i++) {
      if (value === null || typeof value !== 'object' || !hasOwn.call(value, parts[i])) {
        return { found: false };
      }
      value = value[parts[i]];
    }
    return { found: true, value: value };
  }

  function send(msg) {
    var text = JSON.stringify(msg);
    host.log.push({ dir: 'out', time: Date.now(), message: JSON.parse(text) });
    iframe.contentWindow.postMessage(text, host.appOrigin);
  }

  // trigger sends the app the event name (e.g. "ticket.saved") with data, as Zendesk does
  // when something happens in the agent's workspace. It returns the message sent.
  function trigger(name, data) {
    var msg = { key: 'zaf.' + name, message: data };
    send(msg);
    return msg;
  }

  // setColorScheme switches the page to "light" or "dark" and tells the app, as Zendesk
  // does when the agent changes the theme.
  function setColorScheme(scheme) {
    if (scheme !== 'light' && scheme !== 'dark') {
      throw new Error('colorScheme must be "light" or "dark"');
    }
    document.documentElement.setAttribute('data-theme', scheme);
    host.colorScheme = scheme;
    host.data.colorScheme = scheme;
    return trigger('colorScheme.changed', scheme);
  }

  function reject(reason, event) {
    host.rejected.push({ reason: reason, origin: event.origin, data: event.data });
  }

  function onMessage(event) {
    if (event.source !== iframe.contentWindow) {
      reject('not from the app iframe', event);
      return;
    }
    if (event.origin !== host.appOrigin) {
      reject('not from the app origin', event);
      return;
    }
    var msg = event.data;
    if (typeof msg === 'string') {
      try {
        msg = JSON.parse(msg);
      } catch (e) {
        reject('not JSON', event);
        return;
      }
    }
    if (msg === null || typeof msg !== 'object') {
      reject('not a JSON object', event);
      return;
    }
    host.log.push({ dir: 'in', time: Date.now(), message: msg });
    handle(msg, event);
  }

  function handle(msg, event) {
    if (typeof msg.request === 'string') {
      answer(msg);
      return;
    }
    var key = typeof msg.key === 'string' ? msg.key : '';
    var count = msg.message && typeof msg.message.subscriberCount === 'number' ? msg.message.subscriberCount : 0;
    if (key === 'iframe.handshake') {
      register(msg, event);
    } else if (key.indexOf('iframe.on:') === 0) {
      host.subscriptions[key.slice('iframe.on:'.length)] = count;
    } else if (key.indexOf('iframe.off:') === 0) {
      var name = key.slice('iframe.off:'.length);
      if (count > 0) {
        host.subscriptions[name] = count;
      } else {
        delete host.subscriptions[name];
      }
    } else if (/^request:\d+$/.test(key)) {
      // The SDK resolves or rejects client.request with responseArgs, jQuery's
      // (jqXHR, textStatus, errorThrown).
      var xhr = {
        status: 501,
        statusText: 'Not Implemented',
        responseText: 'not supported by the simulator',
        responseJSON: { error: 'NotSimulated', description: 'not supported by the simulator' }
      };
      send({ key: 'zaf.' + key + '.fail', message: { responseArgs: [xhr, 'error', 'Not Implemented'] } });
    }
    // iframe.trigger:…, iframe.reply:… and anything else are only logged.
  }

  function register(msg, event) {
    if (msg.appGuid !== host.appGuid) {
      reject('handshake for another app_guid', event);
      return;
    }
    send({ key: 'zaf.app.registered', message: { metadata: config.metadata, context: config.context } });
    host.registered = true;
    host.registrations++;
  }

  function unavailable(path, why) {
    return { name: 'APIUnavailable', message: why, path: path };
  }

  function answer(msg) {
    var result = { errors: {} };
    var params = msg.params;
    switch (msg.request) {
      case 'get':
        if (!Array.isArray(params)) {
          send({ id: msg.id, error: { name: 'InvalidRequest', message: 'get takes an array of paths' } });
          return;
        }
        params.forEach(function (path) {
          var got = lookup(path);
          if (got.found) {
            result[path] = got.value;
          } else {
            result.errors[path] = unavailable(path, 'is not available in the zendesktest simulator');
          }
        });
        break;
      case 'set':
        Object.keys(params || {}).forEach(function (path) {
          result.errors[path] = unavailable(path, 'cannot be set in the zendesktest simulator');
        });
        break;
      case 'invoke':
        Object.keys(params || {}).forEach(function (name) {
          var args = Array.isArray(params[name]) ? params[name] : [];
          var err = invoke(name, args);
          if (err) {
            result.errors[name] = unavailable(name, err);
          }
        });
        break;
      default:
        send({ id: msg.id, error: { name: 'InvalidRequest', message: 'unknown request ' + JSON.stringify(msg.request) } });
        return;
    }
    send({ id: msg.id, result: result });
  }

  // invoke runs one invoked action and returns why it failed, or null.
  function invoke(name, args) {
    switch (name) {
      case 'resize':
        return resize(args[0]);
      case 'notify':
        notify(String(args[0]), typeof args[1] === 'string' ? args[1] : 'notice');
        return null;
      case 'routeTo':
        return routeTo(args);
      default:
        return 'cannot be invoked in the zendesktest simulator';
    }
  }

  var cssLength = /^\d+(\.\d+)?(px|%|vh|em|rem)?$/;

  function resize(size) {
    if (!size || typeof size !== 'object') {
      return 'takes {width, height}';
    }
    host.lastResize = { width: size.width, height: size.height };
    if (size.height === undefined) {
      return null;
    }
    var height = String(size.height);
    if (!cssLength.test(height)) {
      return 'height ' + JSON.stringify(size.height) + ' is not a CSS length';
    }
    // The sidebar's width is Zendesk's, not the app's: only the height changes.
    iframe.style.height = /\d$/.test(height) ? height + 'px' : height;
    return null;
  }

  // routeTo opens another ticket's page, keeping the theme and locale, as Zendesk opens
  // the ticket in the agent's workspace. Other routes are not simulated.
  function routeTo(args) {
    host.routes.push(args);
    if (args[0] !== 'ticket' || !/^\d+$/.test(String(args[1]))) {
      return 'is simulated only for a ticket id, not ' + JSON.stringify(args.slice(0, 2));
    }
    var query = new URLSearchParams(window.location.search);
    query.delete('new');
    var search = query.toString();
    var target = '/agent/tickets/' + String(args[1]) + (search ? '?' + search : '');
    // After this reply has been sent.
    setTimeout(function () {
      window.location.assign(target);
    }, 0);
    return null;
  }

  function notify(message, kind) {
    host.notifications.push({ message: message, kind: kind });
    if (notifications) {
      var p = document.createElement('p');
      p.className = 'notify-' + kind.replace(/[^a-z]/g, '');
      p.textContent = message;
      notifications.appendChild(p);
    }
  }

  if (iframe && form && host.appOrigin) {
    window.addEventListener('message', onMessage);
    form.submit();
  }
})();
