package sms

import (
	"context"
	"sync"
	"time"

	"github.com/zenklav/zenklav"
)

// consentCache keeps each customer's profile and SMS consent for ConsentTTL: a burst of texts
// asks Klaviyo once.
type consentCache struct {
	mu      sync.Mutex
	entries map[string]consentEntry
}

type consentEntry struct {
	profile zenklav.Profile
	found   bool
	at      time.Time
}

// profile returns the Klaviyo profile of the phone, cached.
func (h *Handler) profile(ctx context.Context, r Route, phone string) (zenklav.Profile, bool, error) {
	key := r.Connection.ID + "/" + phone
	now := h.cfg.Now()
	h.consent.mu.Lock()
	e, ok := h.consent.entries[key]
	h.consent.mu.Unlock()
	if ok && now.Sub(e.at) < h.cfg.ConsentTTL {
		return e.profile, e.found, nil
	}
	p, found, err := r.Klaviyo.ProfileByPhone(ctx, phone)
	if err != nil {
		return zenklav.Profile{}, false, klaviyoErr(err)
	}
	h.consent.mu.Lock()
	h.consent.entries[key] = consentEntry{profile: p, found: found, at: now}
	h.consent.mu.Unlock()
	return p, found, nil
}

// consented says whether the phone's profile is subscribed to SMS.
func (h *Handler) consented(ctx context.Context, r Route, phone string) (bool, error) {
	p, found, err := h.profile(ctx, r, phone)
	if err != nil || !found {
		return false, err
	}
	return p.SMSConsent != nil && p.SMSConsent.Consent == "SUBSCRIBED", nil
}
