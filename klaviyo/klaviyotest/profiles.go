package klaviyotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/zenklav/zenklav/klaviyo"
)

// maxProfileBytes is Klaviyo's "100KB" limit on one profile of a bulk import, read as the
// larger binary kilobytes: the client keeps to the decimal reading, the simulator refuses
// only what Klaviyo surely would.
const maxProfileBytes = 100 << 10

// importBody is the part of ProfileImportJobCreateQuery the simulator keeps. The entries stay
// raw so each one's size can be checked against maxProfileBytes.
type importBody struct {
	Data struct {
		Attributes struct {
			Profiles struct {
				Data []json.RawMessage `json:"data"`
			} `json:"profiles"`
		} `json:"attributes"`
	} `json:"data"`
}

// importedProfile is one entry of an import (ProfileUpsertQueryResourceObject).
type importedProfile struct {
	Attributes struct {
		Email       *string        `json:"email"`
		PhoneNumber *string        `json:"phone_number"`
		ExternalID  *string        `json:"external_id"`
		Properties  map[string]any `json:"properties"`
	} `json:"attributes"`
}

// bulkImportProfiles answers POST /api/profile-bulk-import-jobs: 202 with the job, queued.
// The simulator applies the import at once, so Profile sees it as soon as the answer is
// sent. The whole request is refused if any profile is, so a 400 stores nothing; Klaviyo
// may instead accept the job and report the bad profiles as its import errors, which a
// client of the simulator therefore cannot rely on.
func (s *Server) bulkImportProfiles(c *call) answer {
	var body importBody
	if err := json.Unmarshal(c.body, &body); err != nil {
		return answer{status: http.StatusBadRequest, errors: []apiError{invalid("decode body: "+err.Error(), "/data")}}
	}
	entries := body.Data.Attributes.Profiles.Data
	if len(entries) > klaviyo.MaxBulkProfiles {
		return answer{status: http.StatusBadRequest, errors: []apiError{invalid(fmt.Sprintf("A request may import at most %d profiles; this one has %d.", klaviyo.MaxBulkProfiles, len(entries)), "/data/attributes/profiles/data")}}
	}
	type update struct {
		ident      klaviyo.Profile
		properties map[string]any
	}
	updates := make([]update, 0, len(entries))
	var errs []apiError
	for i, raw := range entries {
		pointer := fmt.Sprintf("/data/attributes/profiles/data/%d", i)
		if len(raw) > maxProfileBytes {
			errs = append(errs, invalid(fmt.Sprintf("A profile may be at most %d bytes; this one is %d.", maxProfileBytes, len(raw)), pointer))
			continue
		}
		var p importedProfile
		if err := json.Unmarshal(raw, &p); err != nil {
			errs = append(errs, invalid("decode profile: "+err.Error(), pointer))
			continue
		}
		a := p.Attributes
		ident := klaviyo.Profile{Email: str(a.Email), PhoneNumber: str(a.PhoneNumber), ExternalID: str(a.ExternalID)}
		if identityOf(ident) == "" {
			// Klaviyo also matches on id and _kx; the simulator keys profiles by what
			// zenklav sends, and refuses the others rather than lose them.
			errs = append(errs, invalid("A profile identifier (email, phone_number or external_id) is required.", pointer+"/attributes"))
			continue
		}
		updates = append(updates, update{ident, a.Properties})
	}
	if len(errs) > 0 {
		return answer{status: http.StatusBadRequest, errors: errs}
	}

	s.mu.Lock()
	now := s.now()
	acct := c.account
	for _, u := range updates {
		p := acct.profileFor(u.ident, now)
		p.imported = true
		// Per key, as Klaviyo documents for profile updates: keys not named are kept.
		for k, v := range u.properties {
			p.properties[k] = v
		}
		acct.seq++
		p.updated, p.seq = now, acct.seq
	}
	s.mu.Unlock()

	id := newID()
	return answer{status: http.StatusAccepted, body: map[string]any{
		"data": map[string]any{
			"type": "profile-bulk-import-job",
			"id":   id,
			"attributes": map[string]any{
				"status":          "queued",
				"created_at":      now.UTC().Format(time.RFC3339),
				"total_count":     len(updates),
				"completed_count": 0,
				"failed_count":    0,
			},
			"links": map[string]any{"self": c.base + "/api/profile-bulk-import-jobs/" + id},
		},
	}}
}

// Profile returns the custom properties of the profile whose identity is identity in the
// account of privateKey, as bulk imports left them: a profile is known by its email, else
// its phone number, else its external id, whichever the import named first in that order.
// Emails match in any case. The map is a copy.
func (s *Server) Profile(privateKey, identity string) (properties map[string]any, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, known := s.accounts[privateKey]
	if !known {
		return nil, false
	}
	p, ok := a.profiles[identity]
	if !ok && strings.Contains(identity, "@") {
		p, ok = a.profiles[strings.ToLower(identity)]
	}
	if !ok || !p.imported {
		return nil, false
	}
	return cloneProperties(p.properties), true
}

// Profiles returns the custom properties of every profile the account of privateKey
// imported, by identity (see Profile); nil for an unknown key. The maps are copies.
func (s *Server) Profiles(privateKey string) map[string]map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[privateKey]
	if !ok {
		return nil
	}
	out := make(map[string]map[string]any, len(a.profiles))
	for id, p := range a.profiles {
		if p.imported {
			out[id] = cloneProperties(p.properties)
		}
	}
	return out
}
