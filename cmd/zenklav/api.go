package main

import (
	"context"
	"io/fs"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/ingest"
	"github.com/zenklav/zenklav/reportsui"
	"github.com/zenklav/zenklav/sidebar"
	zendeskapp "github.com/zenklav/zenklav/zendesk-app"
)

// buildAPI adds the api role to the HTTP server: the webhooks, the sidebar when a connection
// has the app, the reports API when zenklav has a signing key, and the reports page. Its
// runner is the HTTP server itself, which every role has.
func buildAPI(ctx context.Context, e *env, srv *backend.Options, b *banner) (runner, error) {
	conns := e.conns
	srv.Ingest = ingest.New(ingest.Config{Connections: conns, Publisher: e.kafkaProducer(), Registry: e.registry})
	srv.MaxInflightBytes = int64(e.cfg.HTTPMaxInflightBytes)
	srv.ReportsPage = reportsui.Page()
	var err error
	if sidebarWanted(conns) {
		if srv.Sidebar, err = e.newSidebar(ctx, conns); err != nil {
			return nil, err
		}
	}
	if err := e.startRefresher(ctx); err != nil {
		return nil, err
	}
	if err := e.addAdmin(ctx, srv, b); err != nil {
		return nil, err
	}
	// Report tokens are verified with ZENKLAV_JWT_SIGNING_KEY: without it there is no
	// reports API (the /reports page then shows the API's 404).
	if len(e.cfg.JWTKeys) == 0 {
		e.logger.Info("reports API off: ZENKLAV_JWT_SIGNING_KEY is empty")
		return nil, nil
	}
	if srv.Reports, err = e.newReports(ctx, conns, b); err != nil {
		return nil, err
	}
	return nil, nil
}

// newReports builds the reports API, and in sandbox mode the banner's marketer token.
func (e *env) newReports(ctx context.Context, conns *zenklav.Connections, b *banner) (*backend.Reports, error) {
	tokens, err := auth.NewReports(e.cfg.JWTKeys, conns, nil)
	if err != nil {
		return nil, err
	}
	store, err := e.ticketStore(ctx)
	if err != nil {
		return nil, err
	}
	if e.sandbox != nil {
		// Sandbox mode's key lives as long as the process: the banner hands out a marketer's
		// token for the sandbox connection, as `zenklav token` would.
		if b.reportsToken, _, err = tokens.Issue(auth.TokenRequest{
			Subject: "sandbox", Role: auth.RoleMarketer, Connections: []string{sandboxSubdomain}, TTL: 24 * time.Hour,
		}); err != nil {
			return nil, err
		}
	}
	return &backend.Reports{Auth: tokens, Source: store}, nil
}

// sidebarWanted says whether any connection names a Zendesk app installation.
func sidebarWanted(conns *zenklav.Connections) bool {
	for _, c := range conns.All() {
		if c.Zendesk.App != nil {
			return true
		}
	}
	return false
}

// newSidebar builds the agent sidebar's part of the HTTP server.
func (e *env) newSidebar(ctx context.Context, conns *zenklav.Connections) (*backend.Sidebar, error) {
	sessions, err := auth.NewSidebar(conns, e.cfg.JWTKeys, nil)
	if err != nil {
		return nil, err
	}
	if _, err := e.apis(ctx, "api role"); err != nil {
		return nil, err
	}
	store, err := e.ticketStore(ctx)
	if err != nil {
		return nil, err
	}
	cards, err := sidebar.New(e.logger.With("role", "api"), sidebar.Config{
		Connections: conns, Accounts: e.sidebarAccounts(), Store: store, Registry: e.registry,
	})
	if err != nil {
		return nil, err
	}
	web, err := fs.Sub(zendeskapp.Web, "web")
	if err != nil {
		return nil, err
	}
	return &backend.Sidebar{Auth: sessions, Cards: cards, Web: web, FrameAncestors: backend.ZendeskOrigins(e.cfg.ZendeskBaseURL)}, nil
}
