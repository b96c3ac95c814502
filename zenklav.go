// Package zenklav is the domain of the Zendesk ⇄ Klaviyo integration, as the product rules
// state it: connections and the brands they sync, the ticket lifecycle and the metrics it
// becomes, a customer's Klaviyo identity, and the interfaces of the systems zenklav talks to
// (Zendesk, Klaviyo, the ticket store, the event log). It holds rules and types only; the
// packages named after a technology (kafka, analytics, klaviyo, zendesk) implement the
// interfaces, the services (ingest, emitter, sink, sidebar, reports) apply the rules, and
// cmd/zenklav wires them. docs/architecture.md is the map.
package zenklav
