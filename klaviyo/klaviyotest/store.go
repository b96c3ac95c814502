package klaviyotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zenklav/zenklav/internal/apispec"
	"github.com/zenklav/zenklav/klaviyo"
)

// limit is an endpoint's published rate limit: burst per second and steady per minute,
// from the operation's x-klaviyo-ratelimit in stable.json.
type limit struct {
	perSecond, perMinute int
}

// limits are the rate limits of the operations the simulator serves.
var limits = map[string]limit{
	"create_event":         {perSecond: 350, perMinute: 3500},
	"bulk_create_events":   {perSecond: 10, perMinute: 150},
	"bulk_import_profiles": {perSecond: 10, perMinute: 150},
	"get_profiles":         {perSecond: 75, perMinute: 750},
	// get_profiles asking for additional-fields[profile]=predictive_analytics has a limit
	// of its own (the operation's description); see limitKey.
	"get_profiles+predictive_analytics": {perSecond: 10, perMinute: 150},
	"get_events":                        {perSecond: 350, perMinute: 3500},
	"get_segments_for_profile":          {perSecond: 3, perMinute: 60},
	"get_lists_for_profile":             {perSecond: 3, perMinute: 60},
	"get_conversations_for_profile":     {perSecond: 3, perMinute: 60},
	"create_conversation_message":       {perSecond: 3, perMinute: 60},
	"get_webhooks":                      {perSecond: 1, perMinute: 15},
	"create_webhook":                    {perSecond: 1, perMinute: 15},
	"get_webhook":                       {perSecond: 1, perMinute: 15},
	"update_webhook":                    {perSecond: 1, perMinute: 15},
	"delete_webhook":                    {perSecond: 1, perMinute: 15},
	"get_webhook_topics":                {perSecond: 1, perMinute: 15},
	"get_webhook_topic":                 {perSecond: 1, perMinute: 15},
}

// account is one Klaviyo account: what it accepted, how it answered, and its rate-limit
// windows.
type account struct {
	events   []klaviyo.Event
	seen     map[string]bool     // dedup keys of accepted events
	profiles map[string]*profile // by identity (see identityOf)
	byID     map[string]*profile // the same profiles, by Klaviyo id
	groupIDs map[string]string   // ids of lists and segments, by "list:"/"segment:" and name
	metrics  map[string]string   // metric ids, by name
	seq      uint64              // orders profile updates, newest last
	answers  answerCounts
	second   map[string]*apispec.Window
	minute   map[string]*apispec.Window

	sms           SMSSettings
	conversations map[string]*conversation // by id

	webhooks []*webhook // the system webhooks of the Webhooks API, oldest first (admin.go)
}

// profile is one profile of an account: made by a bulk import, by an event about it, or by
// SetProfileDetails.
type profile struct {
	id         string // Klaviyo's id, fixed when the profile is made
	identity   string // its key in account.profiles
	ident      klaviyo.Profile
	imported   bool // a bulk import named it: Profile and Profiles report only these
	properties map[string]any
	details    ProfileDetails
	// conversation is its SMS conversation: made by SetSMSProfile or by a text (Text), nil
	// for a profile that never had one.
	conversation *conversation
	created      time.Time
	updated      time.Time
	seq          uint64
}

// answerCounts counts the answers an account's requests got, for the sandbox page.
type answerCounts struct {
	Accepted  int `json:"accepted"`  // 2xx (the operations simulated answer 202)
	Refused   int `json:"refused"`   // 4xx other than 429
	Throttled int `json:"throttled"` // 429
	Failed    int `json:"failed"`    // 5xx, injected or the simulator's own
}

func (c *answerCounts) count(status int) {
	switch {
	case status >= 200 && status <= 299:
		c.Accepted++
	case status == http.StatusTooManyRequests:
		c.Throttled++
	case status >= 400 && status <= 499:
		c.Refused++
	case status >= 500:
		c.Failed++
	}
}

func newAccount() *account {
	return &account{
		seen:     map[string]bool{},
		profiles: map[string]*profile{},
		byID:     map[string]*profile{},
		groupIDs: map[string]string{},
		metrics:  map[string]string{},
		second:   map[string]*apispec.Window{},
		minute:   map[string]*apispec.Window{},

		conversations: map[string]*conversation{},
	}
}

// quota is what the RateLimit-* headers of an admitted request report.
type quota struct {
	limit, remaining int
	reset            time.Duration
}

// take counts a request of opID against both of its windows and returns the quota of the
// tighter one: the fewer requests left, and on a tie the later reset, so a client pacing
// itself by the headers is refused by neither window. When either window is full it counts
// nothing and returns the longer of the two waits: a client that honours it is not refused
// again by the other window.
func (a *account) take(opID string, lim limit, now time.Time) (quota, time.Duration, bool) {
	sec, min := a.second[opID], a.minute[opID]
	if sec == nil {
		sec, min = &apispec.Window{}, &apispec.Window{}
		a.second[opID], a.minute[opID] = sec, min
	}
	if wait := max(sec.Wait(now, time.Second, lim.perSecond), min.Wait(now, time.Minute, lim.perMinute)); wait > 0 {
		return quota{}, wait, false
	}
	sec.Take()
	min.Take()
	// Both windows have just counted this request, so they have started, and a window with
	// room for no request has room again only when it ends: Wait with a limit of 0 is the
	// time until the reset.
	q := quota{limit: lim.perSecond, remaining: lim.perSecond - sec.Used(), reset: sec.Wait(now, time.Second, 0)}
	m := quota{limit: lim.perMinute, remaining: lim.perMinute - min.Used(), reset: min.Wait(now, time.Minute, 0)}
	if m.remaining < q.remaining || m.remaining == q.remaining && m.reset > q.reset {
		q = m
	}
	return q, 0, true
}

// Wire shapes of the request bodies; the spec validation has already checked them, so
// decoding only picks out what the simulator keeps.
type (
	profileJSON struct {
		ID         *string `json:"id"`
		Attributes struct {
			Email       *string `json:"email"`
			PhoneNumber *string `json:"phone_number"`
			ExternalID  *string `json:"external_id"`
			AnonymousID *string `json:"anonymous_id"`
			KX          *string `json:"_kx"`
		} `json:"attributes"`
	}
	eventJSON struct {
		Properties map[string]any `json:"properties"`
		Time       *time.Time     `json:"time"`
		Value      *float64       `json:"value"`
		UniqueID   *string        `json:"unique_id"`
		Backfill   bool           `json:"backfill"`
		Metric     struct {
			Data struct {
				Attributes struct {
					Name string `json:"name"`
				} `json:"attributes"`
			} `json:"data"`
		} `json:"metric"`
		Profile *struct {
			Data profileJSON `json:"data"`
		} `json:"profile"`
	}
	createEventBody struct {
		Data struct {
			Attributes eventJSON `json:"attributes"`
		} `json:"data"`
	}
	bulkBody struct {
		Data struct {
			Attributes struct {
				Jobs struct {
					Data []struct {
						Attributes struct {
							Profile struct {
								Data profileJSON `json:"data"`
							} `json:"profile"`
							Events struct {
								Data []struct {
									Attributes eventJSON `json:"attributes"`
								} `json:"data"`
							} `json:"events"`
						} `json:"attributes"`
					} `json:"data"`
				} `json:"events-bulk-create"`
			} `json:"attributes"`
		} `json:"data"`
	}
)

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// identity names the profile an event is about, for deduplication: the first identifier
// it carries, in the order Klaviyo resolves them. Events that name one person by two
// different identifiers are not merged, as they would be once Klaviyo has linked them.
func (p profileJSON) identity() string {
	a := p.Attributes
	for _, id := range []struct{ kind, v string }{
		{"id", str(p.ID)},
		{"email", strings.ToLower(str(a.Email))},
		{"phone_number", str(a.PhoneNumber)},
		{"external_id", str(a.ExternalID)},
		{"anonymous_id", str(a.AnonymousID)},
		{"_kx", str(a.KX)},
	} {
		if id.v != "" {
			return id.kind + ":" + id.v
		}
	}
	return ""
}

// pending is an event checked and ready to store.
type pending struct {
	event klaviyo.Event
	key   string
}

// check turns a decoded event into what the account stores, or the error Klaviyo gives.
// pointer is the JSON pointer of the event's attributes, for the error's source.
func check(p profileJSON, e eventJSON, received time.Time, pointer, profilePointer string) (pending, *apiError) {
	who := p.identity()
	if who == "" {
		err := invalid("A profile identifier (id, email, phone_number, external_id, anonymous_id or _kx) is required.", profilePointer)
		return pending{}, &err
	}
	name := e.Metric.Data.Attributes.Name
	if name == "" || utf8.RuneCountInString(name) >= 128 {
		err := invalid("The metric name must have between 1 and 127 characters.", pointer+"/metric/data/attributes/name")
		return pending{}, &err
	}
	at := received
	if e.Time != nil {
		at = *e.Time
	}
	at = at.Truncate(time.Second).UTC()
	if at.Year() < 1990 || at.After(received.AddDate(1, 0, 0)) {
		err := invalid("The event time must be after 1990 and at most one year in the future.", pointer+"/time")
		return pending{}, &err
	}
	uid := str(e.UniqueID)
	// Without a unique_id Klaviyo deduplicates on the time to the second.
	dedup := uid
	if dedup == "" {
		dedup = "time:" + at.Format(time.RFC3339)
	}
	a := p.Attributes
	return pending{
		event: klaviyo.Event{
			Metric: name,
			Profile: klaviyo.Profile{
				Email:       str(a.Email),
				PhoneNumber: str(a.PhoneNumber),
				ExternalID:  str(a.ExternalID),
			},
			Properties: e.Properties,
			Time:       at,
			UniqueID:   uid,
			Value:      e.Value,
			Backfill:   e.Backfill,
		},
		key: who + "\x00" + name + "\x00" + dedup,
	}, nil
}

// identityOf is the key the simulator stores a profile under: its email (lowercased, as
// Klaviyo matches emails), else its phone number, else its external id. Unlike the dedup
// identity of events it carries no kind, so tests can look a profile up by the identifier
// they sent.
func identityOf(p klaviyo.Profile) string {
	switch {
	case p.Email != "":
		return strings.ToLower(p.Email)
	case p.PhoneNumber != "":
		return p.PhoneNumber
	default:
		return p.ExternalID
	}
}

// cloneJSON copies a decoded JSON value all the way down, so what a test reads cannot
// change what an account holds, nor the other way round.
func cloneJSON(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return cloneProperties(v)
	case []any:
		c := make([]any, len(v))
		for i, x := range v {
			c[i] = cloneJSON(x)
		}
		return c
	default:
		return v
	}
}

func cloneProperties(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = cloneJSON(v)
	}
	return c
}

func cloneEvent(e klaviyo.Event) klaviyo.Event {
	e.Properties = cloneProperties(e.Properties)
	if e.Value != nil {
		v := *e.Value
		e.Value = &v
	}
	return e
}

// store keeps the events of c whose dedup key the account has not seen (the first one
// wins) and tells OnAccept's hook which they were.
func (s *Server) store(c *call, events []pending) {
	s.mu.Lock()
	a, hook := c.account, s.onAccept
	kept := len(a.events)
	for _, p := range events {
		if a.seen[p.key] {
			continue
		}
		a.seen[p.key] = true
		a.events = append(a.events, p.event)
		a.profileFor(p.event.Profile, s.now())
	}
	// The slice is the account's own, capped so the hook cannot append into it; later
	// requests only append, so these elements do not change under the hook.
	added := a.events[kept:len(a.events):len(a.events)]
	s.mu.Unlock()
	if hook != nil && len(added) > 0 {
		hook(c.key, added)
	}
}

func (s *Server) received() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

// createEvent answers POST /api/events: 202 with no body.
func (s *Server) createEvent(c *call) answer {
	var body createEventBody
	if err := json.Unmarshal(c.body, &body); err != nil {
		return answer{status: http.StatusBadRequest, errors: []apiError{invalid("decode body: "+err.Error(), "/data")}}
	}
	attrs := body.Data.Attributes
	var p profileJSON
	if attrs.Profile != nil {
		p = attrs.Profile.Data
	}
	ev, apiErr := check(p, attrs, s.received(), "/data/attributes", "/data/attributes/profile/data")
	if apiErr == nil {
		apiErr = s.refused(ev.event, "/data/attributes")
	}
	if apiErr != nil {
		return answer{status: http.StatusBadRequest, errors: []apiError{*apiErr}}
	}
	s.store(c, []pending{ev})
	return answer{status: http.StatusAccepted}
}

// bulkCreateEvents answers POST /api/event-bulk-create-jobs: 202 with no body. The whole
// request is refused if any event is, so a 400 stores nothing.
func (s *Server) bulkCreateEvents(c *call) answer {
	var body bulkBody
	if err := json.Unmarshal(c.body, &body); err != nil {
		return answer{status: http.StatusBadRequest, errors: []apiError{invalid("decode body: "+err.Error(), "/data")}}
	}
	now := s.received()
	var events []pending
	var errs []apiError
	uids := map[string]string{} // unique_id → pointer of its first use
	for i, entry := range body.Data.Attributes.Jobs.Data {
		base := fmt.Sprintf("/data/attributes/events-bulk-create/data/%d/attributes", i)
		for j, e := range entry.Attributes.Events.Data {
			pointer := fmt.Sprintf("%s/events/data/%d/attributes", base, j)
			ev, apiErr := check(entry.Attributes.Profile.Data, e.Attributes, now, pointer, base+"/profile/data")
			if apiErr == nil {
				apiErr = s.refused(ev.event, pointer)
			}
			if apiErr != nil {
				errs = append(errs, *apiErr)
				continue
			}
			if uid := ev.event.UniqueID; uid != "" {
				if first, dup := uids[uid]; dup {
					errs = append(errs, invalid(fmt.Sprintf("unique_id %q is repeated in this request (first at %s).", uid, first), pointer+"/unique_id"))
					continue
				}
				uids[uid] = pointer
			}
			events = append(events, ev)
		}
	}
	if len(errs) == 0 && len(events) > klaviyo.MaxBulkEvents {
		errs = append(errs, invalid(fmt.Sprintf("A request may create at most %d events; this one has %d.", klaviyo.MaxBulkEvents, len(events)), "/data/attributes/events-bulk-create/data"))
	}
	if len(errs) > 0 {
		return answer{status: http.StatusBadRequest, errors: errs}
	}
	s.store(c, events)
	return answer{status: http.StatusAccepted}
}
