package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/config"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/pipeline"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
)

// The adapters below join the emitter to the API clients: the pipeline and the clients do not
// know each other.

// apiClients are the connections' API clients, made once and shared by the emitter and the
// sidebar: one Klaviyo client per private key, since its rate limits are the account's
// whichever connections (and parts) share the key, and one Zendesk client per connection.
type apiClients struct {
	klaviyo map[string]*klaviyo.Client // by connection id; absent without a Klaviyo key
	zendesk map[string]*zendesk.Client // by connection id; absent without API credentials
}

func newAPIClients(logger *slog.Logger, cfg config.Config, conns *zenklav.Connections) (*apiClients, error) {
	out := &apiClients{klaviyo: map[string]*klaviyo.Client{}, zendesk: map[string]*zendesk.Client{}}
	byKey := map[zenklav.Secret]*klaviyo.Client{}
	var errs []error
	for _, c := range conns.Connections {
		if key := c.Klaviyo.PrivateKey; key != "" {
			kc := byKey[key]
			if kc == nil {
				var err error
				if kc, err = klaviyo.NewClient(logger, klaviyo.ClientConfig{BaseURL: cfg.KlaviyoBaseURL, PrivateKey: key.Reveal()}); err != nil {
					errs = append(errs, fmt.Errorf("connection %q: %w", c.ID, err))
					continue
				}
				byKey[key] = kc
			}
			out.klaviyo[c.ID] = kc
		}
		if c.Zendesk.APIToken != "" {
			zc, err := zendesk.NewClient(logger, zendesk.ClientConfig{
				BaseURL: strings.ReplaceAll(cfg.ZendeskBaseURL, "{subdomain}", c.Zendesk.Subdomain),
				Email:   c.Zendesk.Email, APIToken: c.Zendesk.APIToken.Reveal(),
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("connection %q: %w", c.ID, err))
				continue
			}
			out.zendesk[c.ID] = zc
		}
	}
	return out, errors.Join(errs...)
}

// routes builds the emitter's route for every connection with a Klaviyo account.
func routes(logger *slog.Logger, conns *zenklav.Connections, clients *apiClients) (map[string]pipeline.Route, error) {
	out := map[string]pipeline.Route{}
	var errs []error
	for _, c := range conns.Connections {
		kc := clients.klaviyo[c.ID]
		if kc == nil {
			logger.Warn("connection has no Klaviyo private key: its tickets reach ClickHouse but not Klaviyo", "connection", c.ID)
			continue
		}
		zc := clients.zendesk[c.ID]
		if zc == nil {
			errs = append(errs, fmt.Errorf("connection %q: the emitter needs zendesk.email and zendesk.api_token to look up assignees, groups and requesters", c.ID))
			continue
		}
		out[c.ID] = pipeline.Route{Brands: c.Zendesk.Brands, Sender: sender{kc}, Profiles: sender{kc}, Directory: directory{zc}}
	}
	return out, errors.Join(errs...)
}

// sender is a Klaviyo account as the emitter's MetricSender.
type sender struct{ c *klaviyo.Client }

func (s sender) Deliver(ctx context.Context, metrics []pipeline.Metric) []error {
	events := make([]klaviyo.Event, len(metrics))
	for i, m := range metrics {
		events[i] = klaviyo.Event{
			Metric:     m.Name,
			Profile:    klaviyo.Profile{Email: m.Email, PhoneNumber: m.Phone},
			Properties: m.Properties,
			Time:       m.Time,
			UniqueID:   m.UniqueID,
			Backfill:   m.Backfill,
		}
	}
	return s.c.Deliver(ctx, events)
}

func (s sender) SetOpenTickets(ctx context.Context, counts []pipeline.OpenTickets) error {
	for start := 0; start < len(counts); start += klaviyo.MaxBulkProfiles {
		chunk := counts[start:min(start+klaviyo.MaxBulkProfiles, len(counts))]
		updates := make([]klaviyo.ProfileUpdate, len(chunk))
		for i, c := range chunk {
			updates[i] = klaviyo.ProfileUpdate{
				Profile:    klaviyo.Profile{Email: c.Email, PhoneNumber: c.Phone},
				Properties: map[string]any{pipeline.OpenTicketsProperty: c.Count},
			}
		}
		if err := s.c.BulkImportProfiles(ctx, updates); err != nil {
			return err
		}
	}
	return nil
}

// ticketStates is the analytics store as the emitter's TicketStates.
type ticketStates struct{ s *analytics.Store }

func (t ticketStates) RequesterTickets(ctx context.Context, tenant string, requesters []int64) (map[int64]map[int64]pipeline.TicketState, error) {
	got, err := t.s.RequesterTickets(ctx, tenant, requesters)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]map[int64]pipeline.TicketState, len(got))
	for r, tickets := range got {
		out[r] = make(map[int64]pipeline.TicketState, len(tickets))
		for id, st := range tickets {
			out[r][id] = pipeline.TicketState{Status: st.Status, OccurredAt: st.OccurredAt}
		}
	}
	return out, nil
}

func (s sender) Delay() time.Duration { return s.c.BulkDelay() }

// directory is a Zendesk account as the emitter's Directory.
type directory struct{ c *zendesk.Client }

func (d directory) Users(ctx context.Context, ids []int64) (map[int64]pipeline.Person, error) {
	users, err := d.c.UsersMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]pipeline.Person, len(users))
	for _, u := range users {
		out[u.ID] = pipeline.Person{Name: u.Name, Email: u.Email, Phone: u.Phone}
	}
	return out, nil
}

func (d directory) GroupName(ctx context.Context, id int64) (string, error) {
	g, err := d.c.Group(ctx, id)
	return g.Name, err
}

func (d directory) Tickets(ctx context.Context, ids []int64) (map[int64]pipeline.TicketDetails, error) {
	tickets, err := d.c.TicketsMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]pipeline.TicketDetails, len(tickets))
	for _, t := range tickets {
		fields := make([]schemas.CustomField, len(t.CustomFields))
		for i, f := range t.CustomFields {
			fields[i] = schemas.CustomField{ID: f.ID, Value: f.Value}
		}
		out[t.ID] = pipeline.TicketDetails{Description: t.Description, BrandID: t.BrandID, RequesterID: t.RequesterID, CustomFields: fields}
	}
	return out, nil
}
