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

// validate reports what Klaviyo would refuse in p as the identifiers of a profile. It is the
// check Event.Validate makes of an event's profile, written once for both.
func (p Profile) validate() error {
	if p.Email == "" && p.PhoneNumber == "" && p.ExternalID == "" {
		return errors.New("profile has no identifier (email, phone number or external id)")
	}
	if p.PhoneNumber != "" && !e164.MatchString(p.PhoneNumber) {
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
		if err := u.Profile.validate(); err != nil {
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
