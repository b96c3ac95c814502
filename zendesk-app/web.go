// Package zendeskapp is zenklav's Zendesk ticket-sidebar app. Zendesk installs the app's
// package (manifest.json, translations/, assets/); the page the sidebar shows is zenklav's own
// (web/), served by the backend after Zendesk's signed request, so it needs no CDN: the ZAF SDK
// is bundled from npm into web/zaf_sdk.js (`make app`).
package zendeskapp

import "embed"

// Web is the sidebar page, under "web/":
//
//   - sidebar.html, an html/template for Zendesk's signed POST to /app/sidebar, executed with
//     a struct of exactly these fields: Session (string, zenklav's session token),
//     SessionExpires (int64, its expiry in unix seconds), Assets (string, the URL prefix where
//     these files are served, ending in "/", e.g. "/app/web/") and Lang ("en" or "es", a first
//     guess that the page corrects from the agent's Zendesk locale);
//   - error.html, an html/template for a refusal shown in the sidebar (bad or expired Zendesk
//     token), with Title, Message and Lang; it links /app/web/sidebar.css;
//   - zaf_sdk.js, messages.js, sidebar.js and sidebar.css, static files for Assets.
//
// The pages have no inline script or style, so they run under a CSP of script-src 'self' and
// style-src 'self'.
//
//go:embed web
var Web embed.FS
