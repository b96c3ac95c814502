package main

import (
	"context"
	"time"

	"github.com/zenklav/zenklav/adminui"
	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/seal"
)

// addAdmin adds the operators' /admin pages to the api role when it can serve them: the
// connections come from the store (the wizard stores what it sets up there),
// ZENKLAV_PUBLIC_URL says where Zendesk and Klaviyo reach zenklav, and admin tokens can be
// verified (ZENKLAV_JWT_SIGNING_KEY). Otherwise the process runs without them, and says why.
func (e *env) addAdmin(ctx context.Context, srv *backend.Options, b *banner) error {
	switch {
	case e.connStore == nil:
		e.logger.Info("admin pages off: the connections come from ZENKLAV_CONNECTIONS_FILE, not the connections store")
		return nil
	case e.cfg.PublicURL == "":
		e.logger.Info("admin pages off: ZENKLAV_PUBLIC_URL is empty, so the webhooks setup makes would have no address")
		return nil
	case len(e.cfg.JWTKeys) == 0:
		e.logger.Info("admin pages off: ZENKLAV_JWT_SIGNING_KEY is empty, so no admin token can be verified")
		return nil
	}
	tokens, err := auth.NewReports(e.cfg.JWTKeys, e.conns, nil)
	if err != nil {
		return err
	}
	svc, err := e.setupService(ctx)
	if err != nil {
		return err
	}
	keys, err := seal.ParseKeyring(e.cfg.SecretsKey)
	if err != nil {
		return err
	}
	srv.Admin = &backend.Admin{
		Verify: tokens.VerifyAdmin, Setup: svc, Keys: keys, PublicURL: e.cfg.PublicURL,
		ZendeskOAuth: e.zendeskOAuth(), KlaviyoOAuth: e.klaviyoOAuth(), Pages: adminui.Pages(),
	}
	b.admin = e.cfg.PublicURL + "/admin"
	if e.sandbox != nil {
		// Sandbox mode's signing key lives as long as the process: the banner hands out an
		// admin's token, as `zenklav token --role admin --tenant '*'` would.
		b.adminToken, _, err = tokens.Issue(auth.TokenRequest{Subject: "sandbox", Role: auth.RoleAdmin, Connections: []string{auth.AllConnections}, TTL: 24 * time.Hour})
	}
	return err
}
