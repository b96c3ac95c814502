/*! zendesk_app_framework_sdk 2.0.11 from npm (Apache-2.0, Zendesk), bundled by `make app` so the sidebar loads it from zenklav, not from a CDN */
// The package is CommonJS (lib/index.js) and exports the ZAFClient object, whose init() the
// sidebar calls; the official prebuilt zaf_sdk.min.js sets the same global.
window.ZAFClient = require('zendesk_app_framework_sdk');
