package klaviyo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/zenklav/zenklav"
)

// MaxBulkProfiles is the most profiles Klaviyo accepts in one bulk import request.
const MaxBulkProfiles = 10000

// maxProfileBytes is Klaviyo's limit on one profile of a bulk import ("100KB"), read as
// decimal kilobytes so that whichever Klaviyo means, a profile under it is accepted.
const maxProfileBytes = 100_000

// ProfileUpdate is one profile of a bulk import: who it is and the custom properties to
// set on it.
type ProfileUpdate struct {
	Profile Profile
	// Properties are merged into the profile's: Klaviyo sets the keys named here and keeps
	// the others.
	Properties map[string]any
}

// validateProfile reports what Klaviyo would refuse in p as the identifiers of a profile. It
// is the check validateEvent makes of an event's profile, written once for both.
func validateProfile(p Profile) error {
	if p.Email == "" && p.PhoneNumber == "" && p.ExternalID == "" {
		return errors.New("profile has no identifier (email, phone number or external id)")
	}
	if p.PhoneNumber != "" && !zenklav.IsE164(p.PhoneNumber) {
		return fmt.Errorf("phone number %q is not in E.164 form", p.PhoneNumber)
	}
	return nil
}

// BulkImportProfiles creates or updates up to MaxBulkProfiles profiles in one request
// (POST /api/profile-bulk-import-jobs). Klaviyo answers 202 with a job it processes later;
// the client does not follow it. Each profile's encoding must stay under 100 KB and the
// whole request under Klaviyo's 5 MB, so callers with large properties send fewer profiles
// a request.
func (c *Client) BulkImportProfiles(ctx context.Context, profiles []ProfileUpdate) error {
	op := fmt.Sprintf("bulk import %d profiles", len(profiles))
	if len(profiles) == 0 {
		return zenklav.Errorf(zenklav.EINVALID, "%s: no profiles", op)
	}
	if len(profiles) > MaxBulkProfiles {
		return zenklav.Errorf(zenklav.EINVALID, "%s: Klaviyo accepts at most %d per request", op, MaxBulkProfiles)
	}
	// Each profile is encoded on its own to measure it against the per-profile limit;
	// the encoded entries then go into the body as they are.
	entries := make([]json.RawMessage, len(profiles))
	for i, u := range profiles {
		if err := validateProfile(u.Profile); err != nil {
			return zenklav.Wrap(zenklav.EINVALID, err, "%s: profile %d", op, i)
		}
		attrs := make(map[string]any, 4)
		for k, v := range profileObject(u.Profile).Attributes {
			attrs[k] = v
		}
		if len(u.Properties) > 0 {
			attrs["properties"] = u.Properties
		}
		entry, err := json.Marshal(map[string]any{"type": "profile", "attributes": attrs})
		if err != nil {
			return zenklav.Wrap(zenklav.EINVALID, err, "%s: encode profile %d", op, i)
		}
		if len(entry) > maxProfileBytes {
			return zenklav.Errorf(zenklav.ETOOLARGE, "%s: profile %d is %d bytes; Klaviyo accepts at most %d", op, i, len(entry), maxProfileBytes)
		}
		entries[i] = entry
	}
	body := map[string]any{"data": map[string]any{
		"type": "profile-bulk-import-job",
		"attributes": map[string]any{
			"profiles": map[string]any{"data": entries},
		},
	}}
	return c.post(ctx, op, "/api/profile-bulk-import-jobs", body)
}

// SetOpenTickets sets zenklav.OpenTicketsProperty on the profiles, in as few bulk imports as
// MaxBulkProfiles allows.
func (c *Client) SetOpenTickets(ctx context.Context, counts []zenklav.OpenTickets) error {
	for start := 0; start < len(counts); start += MaxBulkProfiles {
		chunk := counts[start:min(start+MaxBulkProfiles, len(counts))]
		updates := make([]ProfileUpdate, len(chunk))
		for i, c := range chunk {
			updates[i] = ProfileUpdate{Profile: c.Profile, Properties: map[string]any{zenklav.OpenTicketsProperty: c.Count}}
		}
		if err := c.BulkImportProfiles(ctx, updates); err != nil {
			return err
		}
	}
	return nil
}
