package main

import (
	zauth "github.com/zenklav/zenklav/auth"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/config"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/sidebar"
	"github.com/zenklav/zenklav/zendesk"
	zendeskapp "github.com/zenklav/zenklav/zendesk-app"
)

// sidebarWanted says whether any connection names a Zendesk app installation.
func sidebarWanted(conns *zenklav.Connections) bool {
	for _, c := range conns.Connections {
		if c.Zendesk.App != nil {
			return true
		}
	}
	return false
}

// newSidebar builds the agent sidebar's part of the HTTP server.
func newSidebar(logger *slog.Logger, reg prometheus.Registerer, cfg config.Config, conns *zenklav.Connections, clients *apiClients, store *analytics.Store) (*backend.Sidebar, error) {
	auth, err := zauth.NewSidebar(conns, cfg.JWTKeys, nil)
	if err != nil {
		return nil, err
	}
	accounts := map[string]sidebar.Account{}
	for _, c := range conns.Connections {
		a := sidebar.Account{}
		if zc := clients.zendesk[c.ID]; zc != nil {
			a.Zendesk = cardDirectory{zc}
		} else if c.Zendesk.App != nil {
			return nil, errors.New("connection " + c.ID + ": the sidebar needs zendesk.email and zendesk.api_token to read the ticket's requester")
		}
		if kc := clients.klaviyo[c.ID]; kc != nil {
			a.Klaviyo = cardKlaviyo{kc}
		}
		accounts[c.ID] = a
	}
	cards, err := sidebar.New(logger, sidebar.Config{
		Connections: conns, Accounts: accounts, History: cardHistory{store}, Registry: reg, Memberships: store,
	})
	if err != nil {
		return nil, err
	}
	web, err := fs.Sub(zendeskapp.Web, "web")
	if err != nil {
		return nil, err
	}
	return &backend.Sidebar{Auth: auth, Cards: cards, Web: web, FrameAncestors: backend.ZendeskOrigins(cfg.ZendeskBaseURL)}, nil
}

// randomSigningKey is sandbox mode's signing key when none is configured: its sessions and
// tokens need not outlive the process.
func randomSigningKey() zenklav.Secret {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return zenklav.Secret(hex.EncodeToString(b[:]))
}

// cardDirectory is a Zendesk account as the sidebar's Directory.
type cardDirectory struct{ c *zendesk.Client }

func (d cardDirectory) Ticket(ctx context.Context, id int64) (sidebar.Ticket, error) {
	t, err := d.c.Ticket(ctx, id)
	return sidebar.Ticket{ID: t.ID, RequesterID: t.RequesterID, BrandID: t.BrandID}, err
}

func (d cardDirectory) User(ctx context.Context, id int64) (sidebar.Person, error) {
	u, err := d.c.User(ctx, id)
	return sidebar.Person{ID: u.ID, Name: u.Name, Email: u.Email, Phone: u.Phone, Role: u.Role}, err
}

// cardKlaviyo is a Klaviyo account as the sidebar's Klaviyo.
type cardKlaviyo struct{ c *klaviyo.Client }

func (k cardKlaviyo) FindProfile(ctx context.Context, email, phone string) (sidebar.Profile, bool, error) {
	r, found, err := k.c.FindProfile(ctx, klaviyo.Profile{Email: email, PhoneNumber: phone})
	if err != nil || !found {
		return sidebar.Profile{}, found, err
	}
	p := sidebar.Profile{
		ID: r.ID, Email: r.Email, Phone: r.PhoneNumber, Organization: r.Organization,
		EmailConsent: cardConsent(r.EmailConsent), SMSConsent: cardConsent(r.SMSConsent),
	}
	p.Name = strings.TrimSpace(r.FirstName + " " + r.LastName)
	if l := r.Location; l.City != "" || l.Region != "" || l.Country != "" || l.Timezone != "" {
		p.Location = &sidebar.Location{City: l.City, Region: l.Region, Country: l.Country, Timezone: l.Timezone}
	}
	if pa := r.Predictive; pa != nil {
		pr := sidebar.Prediction{
			PredictedCLV: pa.PredictedCLV, HistoricCLV: pa.HistoricCLV, TotalCLV: pa.TotalCLV,
			ChurnProbability: pa.ChurnProbability, AverageOrderValue: pa.AverageOrderValue,
		}
		if pa.ExpectedDateOfNextOrder != nil {
			pr.ExpectedNextOrder = pa.ExpectedDateOfNextOrder.Format(time.DateOnly)
		}
		if pr != (sidebar.Prediction{}) {
			p.Predictions = &pr
		}
	}
	return p, true, nil
}

func cardConsent(c *klaviyo.Consent) *sidebar.Consent {
	if c == nil {
		return nil
	}
	out := &sidebar.Consent{State: sidebar.ConsentState(c.Consent), CanReceive: c.CanReceive}
	if !c.Timestamp.IsZero() {
		t := c.Timestamp.UTC()
		out.At = &t
	}
	return out
}

func (k cardKlaviyo) RecentEvents(ctx context.Context, profileID string, n int) ([]sidebar.Activity, error) {
	events, err := k.c.RecentEvents(ctx, profileID, n)
	if err != nil {
		return nil, err
	}
	out := make([]sidebar.Activity, len(events))
	for i, e := range events {
		out[i] = sidebar.Activity{Metric: e.Metric, Time: e.Time.UTC(), Value: e.Value}
	}
	return out, nil
}

func (k cardKlaviyo) Segments(ctx context.Context, profileID string) ([]sidebar.Membership, error) {
	return memberships(k.c.ProfileSegments(ctx, profileID))
}

func (k cardKlaviyo) Lists(ctx context.Context, profileID string) ([]sidebar.Membership, error) {
	return memberships(k.c.ProfileLists(ctx, profileID))
}

func memberships(ms []klaviyo.Membership, err error) ([]sidebar.Membership, error) {
	if err != nil {
		return nil, err
	}
	out := make([]sidebar.Membership, len(ms))
	for i, m := range ms {
		out[i] = sidebar.Membership{ID: m.ID, Name: m.Name}
	}
	return out, nil
}

// cardHistory is the analytics store as the sidebar's History.
type cardHistory struct{ s *analytics.Store }

func (h cardHistory) SupportHistory(ctx context.Context, tenant string, requesterID int64, since time.Time) (sidebar.Support, error) {
	got, err := h.s.SupportHistory(ctx, tenant, requesterID, since)
	if err != nil {
		return sidebar.Support{}, err
	}
	out := sidebar.Support{Open: got.Open, Recent: got.Recent, Total: got.Total}
	if r := got.LastResolved; r.TicketID != 0 {
		out.LastResolved = &sidebar.Resolved{TicketID: r.TicketID, Subject: r.Subject, At: r.At.UTC()}
	}
	return out, nil
}
