package zenklav

import (
	"regexp"
	"strings"
)

// Person is a Zendesk user: a ticket's requester or assignee. The JSON is the sidebar card's
// (the role stays out of it).
type Person struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	Phone string `json:"phone,omitempty"`
	Role  string `json:"-"` // end-user, agent or admin
}

// ProfileKey identifies a Klaviyo profile: what an event is recorded on and a profile is
// looked up by. Klaviyo needs at least one of the three.
type ProfileKey struct {
	Email       string
	PhoneNumber string // E.164, e.g. "+15005550006"
	ExternalID  string
}

var (
	phoneNoise = strings.NewReplacer(" ", "", "-", "", "(", "", ")", "", ".", "", "\u00a0", "")
	e164       = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
)

// IsE164 reports whether phone is written in E.164 form: the only form Klaviyo identifies
// profiles by.
func IsE164(phone string) bool { return e164.MatchString(phone) }

// E164 returns phone in E.164 form, or "" when it cannot be: guessing a country code would
// attach a customer's events to a stranger.
func E164(phone string) string {
	p := phoneNoise.Replace(strings.TrimSpace(phone))
	if strings.HasPrefix(p, "00") {
		p = "+" + p[2:]
	}
	if IsE164(p) {
		return p
	}
	return ""
}

// ProfileOf picks the Klaviyo profile of a ticket's requester: by email, else by phone (SMS
// tickets). The emitter records metrics on that profile and the sidebar reads it, so both
// find the same one. A requester with neither is EINVALID: there is no profile to use.
func ProfileOf(r Person) (ProfileKey, error) {
	if email := strings.TrimSpace(r.Email); email != "" {
		return ProfileKey{Email: email}, nil
	}
	if phone := E164(r.Phone); phone != "" {
		return ProfileKey{PhoneNumber: phone}, nil
	}
	if r.Phone != "" {
		return ProfileKey{}, Errorf(EINVALID, "requester has no email, and phone %q is not a full international number", r.Phone)
	}
	return ProfileKey{}, Errorf(EINVALID, "requester has no email or phone: no Klaviyo profile to record the event on")
}
