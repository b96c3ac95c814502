package klaviyotest

import (
	"cmp"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav/klaviyo"
)

// ProfileDetails is what a test can give a profile beyond its identifiers and custom
// properties, so that reading it back (get_profiles, get_segments_for_profile,
// get_lists_for_profile) shows a full profile card.
type ProfileDetails struct {
	FirstName, LastName, Organization, Title, Locale, Image string
	Location                                                klaviyo.Location
	// EmailConsent and SMSConsent are the marketing consent of each channel; nil answers
	// NEVER_SUBSCRIBED, unable to receive.
	EmailConsent, SMSConsent *klaviyo.Consent
	// Predictive is what get_profiles answers as predictive_analytics; nil answers every
	// prediction null, as Klaviyo does for a profile it has no model for.
	Predictive *klaviyo.PredictiveAnalytics
	// Segments and Lists name the segments and lists the profile belongs to. The account
	// gives each name an id of its own the first time it sees it.
	Segments, Lists []string
}

// SetProfileDetails gives the profile identity names (an email, a phone number starting
// with "+", or else an external id) the details d, making the profile if the account of
// privateKey has none by that identifier, and returns its Klaviyo id. It panics if no
// account has privateKey: a mistake in the test.
func (s *Server) SetProfileDetails(privateKey, identity string, d ProfileDetails) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[privateKey]
	if !ok {
		panic("klaviyotest: SetProfileDetails: no account has this private key")
	}
	p := a.profileFor(identify(identity), s.now())
	if p == nil {
		panic("klaviyotest: SetProfileDetails: empty identity")
	}
	d.Segments, d.Lists = slices.Clone(d.Segments), slices.Clone(d.Lists)
	if d.Predictive != nil {
		pa := *d.Predictive
		pa.RankedChannelAffinity = slices.Clone(pa.RankedChannelAffinity)
		d.Predictive = &pa
	}
	p.details = d
	p.updated = s.now()
	return p.id
}

// ProfileID returns the Klaviyo id of the profile identity names (see SetProfileDetails)
// in the account of privateKey, whether an import, an event or SetProfileDetails made it.
func (s *Server) ProfileID(privateKey, identity string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[privateKey]
	if !ok {
		return "", false
	}
	p := a.profiles[identityOf(identify(identity))]
	if p == nil {
		return "", false
	}
	return p.id, true
}

// identify reads a test's identity string as the identifier it looks like.
func identify(identity string) klaviyo.Profile {
	switch {
	case strings.Contains(identity, "@"):
		return klaviyo.Profile{Email: identity}
	case strings.HasPrefix(identity, "+"):
		return klaviyo.Profile{PhoneNumber: identity}
	default:
		return klaviyo.Profile{ExternalID: identity}
	}
}

// profileFor returns the profile ident names, making it if there is none, and records any
// identifier of ident the profile did not have yet; nil when ident names nobody. The
// caller holds s.mu.
func (a *account) profileFor(ident klaviyo.Profile, now time.Time) *profile {
	key := identityOf(ident)
	if key == "" {
		return nil
	}
	p := a.profiles[key]
	if p == nil {
		p = &profile{id: newProfileID(), identity: key, properties: map[string]any{}, created: now, updated: now}
		a.profiles[key] = p
		a.byID[p.id] = p
	}
	if p.ident.Email == "" {
		p.ident.Email = ident.Email
	}
	if p.ident.PhoneNumber == "" {
		p.ident.PhoneNumber = ident.PhoneNumber
	}
	if p.ident.ExternalID == "" {
		p.ident.ExternalID = ident.ExternalID
	}
	return p
}

// imported counts the profiles bulk imports named.
func (a *account) imported() int {
	n := 0
	for _, p := range a.profiles {
		if p.imported {
			n++
		}
	}
	return n
}

// groupID is the id of the list or segment called name ("list" or "segment" kind).
func (a *account) groupID(kind, name string) string {
	k := kind + ":" + name
	id, ok := a.groupIDs[k]
	if !ok {
		id = fmt.Sprintf("%s%05d", strings.ToUpper(kind[:1]), len(a.groupIDs)+1)
		a.groupIDs[k] = id
	}
	return id
}

// metricID is the id of the metric called name.
func (a *account) metricID(name string) string {
	id, ok := a.metrics[name]
	if !ok {
		id = fmt.Sprintf("M%05d", len(a.metrics)+1)
		a.metrics[name] = id
	}
	return id
}

// crockford is the alphabet of ULIDs, which Klaviyo's profile ids are.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newProfileID returns a random id shaped like a ULID.
func newProfileID() string {
	var b [26]byte
	rand.Read(b[:])
	b[0] = '0'
	for i := 1; i < len(b); i++ {
		b[i] = crockford[int(b[i])%len(crockford)]
	}
	return string(b[:])
}

// limitKey names the rate limit a request counts against: its operation's, except for
// get_profiles asking for predictive analytics, which has a lower one of its own.
func limitKey(opID string, q url.Values) string {
	if opID == "get_profiles" && slices.Contains(listParam(q, "additional-fields[profile]"), "predictive_analytics") {
		return "get_profiles+predictive_analytics"
	}
	return opID
}

// listParam reads a comma-separated (explode: false) query parameter.
func listParam(q url.Values, name string) []string {
	var out []string
	for _, v := range q[name] {
		for _, x := range strings.Split(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
	}
	return out
}

// equalsFilter is the one filter form the simulator reads: equals(field,"value"), with
// double or single quotes.
var equalsFilter = regexp.MustCompile(`^equals\(\s*([a-z_]+)\s*,\s*(?:"([^"]*)"|'([^']*)')\s*\)$`)

// parseFilter reads an equals filter on one of fields; ok is false for anything else.
func parseFilter(filter string, fields ...string) (field, value string, ok bool) {
	m := equalsFilter.FindStringSubmatch(strings.TrimSpace(filter))
	if m == nil || !slices.Contains(fields, m[1]) {
		return "", "", false
	}
	return m[1], m[2] + m[3], true
}

func notSimulatedFilter(filter, fields string) answer {
	return answer{status: http.StatusBadRequest, errors: []apiError{{
		Code: "invalid", Title: "Invalid input.",
		Detail: fmt.Sprintf("klaviyotest simulates only filter=equals(field,\"value\") with field one of %s, not %q.", fields, filter),
	}}}
}

// nullable is s, or JSON null when it is empty, as Klaviyo sends absent strings.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

func nullFloat(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

// pageSize reads page[size], def when absent.
func pageSize(q url.Values, def int) int {
	if n, err := strconv.Atoi(q.Get("page[size]")); err == nil && n > 0 {
		return n
	}
	return def
}

// getProfiles answers GET /api/profiles filtered by equals on email, phone_number,
// external_id or id, with the additional fields asked for.
func (s *Server) getProfiles(c *call) answer {
	const fields = "email, phone_number, external_id, id"
	filter := c.query.Get("filter")
	field, value, ok := parseFilter(filter, "email", "phone_number", "external_id", "id")
	if !ok {
		return notSimulatedFilter(filter, fields)
	}
	additional := listParam(c.query, "additional-fields[profile]")
	s.mu.Lock()
	defer s.mu.Unlock()
	a := c.account
	var found []*profile
	for _, p := range a.profiles {
		var match bool
		switch field {
		case "email":
			match = p.ident.Email != "" && strings.EqualFold(p.ident.Email, value)
		case "phone_number":
			match = p.ident.PhoneNumber == value
		case "external_id":
			match = p.ident.ExternalID == value
		case "id":
			match = p.id == value
		}
		if match && value != "" {
			found = append(found, p)
		}
	}
	slices.SortFunc(found, func(x, y *profile) int {
		return cmp.Or(x.created.Compare(y.created), cmp.Compare(x.id, y.id))
	})
	found = found[:min(len(found), pageSize(c.query, 20))]
	data := make([]any, 0, len(found))
	for _, p := range found {
		data = append(data, p.resource(c.base,
			slices.Contains(additional, "subscriptions"), slices.Contains(additional, "predictive_analytics")))
	}
	return answer{status: http.StatusOK, body: map[string]any{
		"data":  data,
		"links": map[string]any{"self": c.base + "/api/profiles?" + c.query.Encode()},
	}}
}

// resource is p as a ProfileResponsePluralConversationsObjectResource.
func (p *profile) resource(base string, subscriptions, predictive bool) map[string]any {
	d := p.details
	loc := d.Location
	attrs := map[string]any{
		"email":           nullable(p.ident.Email),
		"phone_number":    nullable(p.ident.PhoneNumber),
		"external_id":     nullable(p.ident.ExternalID),
		"first_name":      nullable(d.FirstName),
		"last_name":       nullable(d.LastName),
		"organization":    nullable(d.Organization),
		"title":           nullable(d.Title),
		"locale":          nullable(d.Locale),
		"image":           nullable(d.Image),
		"created":         nullTime(p.created),
		"updated":         nullTime(p.updated),
		"last_event_date": nil,
		"location": map[string]any{
			"address1": nullable(loc.Address1), "address2": nullable(loc.Address2),
			"city": nullable(loc.City), "region": nullable(loc.Region), "zip": nullable(loc.Zip),
			"country": nullable(loc.Country), "timezone": nullable(loc.Timezone), "ip": nil,
		},
		"properties": cloneProperties(p.properties),
	}
	if subscriptions {
		attrs["subscriptions"] = map[string]any{
			"email": map[string]any{"marketing": consentJSON(d.EmailConsent, "can_receive_email_marketing")},
			"sms":   map[string]any{"marketing": consentJSON(d.SMSConsent, "can_receive_sms_marketing")},
		}
	}
	if predictive {
		pa := klaviyo.PredictiveAnalytics{}
		if d.Predictive != nil {
			pa = *d.Predictive
		}
		m := map[string]any{
			"historic_clv":                nullFloat(pa.HistoricCLV),
			"predicted_clv":               nullFloat(pa.PredictedCLV),
			"total_clv":                   nullFloat(pa.TotalCLV),
			"historic_number_of_orders":   nullFloat(pa.HistoricNumberOfOrders),
			"predicted_number_of_orders":  nullFloat(pa.PredictedNumberOfOrders),
			"average_days_between_orders": nullFloat(pa.AverageDaysBetweenOrders),
			"average_order_value":         nullFloat(pa.AverageOrderValue),
			"churn_probability":           nullFloat(pa.ChurnProbability),
			"expected_date_of_next_order": nil,
		}
		if pa.ExpectedDateOfNextOrder != nil {
			m["expected_date_of_next_order"] = nullTime(*pa.ExpectedDateOfNextOrder)
		}
		if len(pa.RankedChannelAffinity) > 0 {
			m["ranked_channel_affinity"] = slices.Clone(pa.RankedChannelAffinity)
		}
		attrs["predictive_analytics"] = m
	}
	return map[string]any{
		"type":       "profile",
		"id":         p.id,
		"attributes": attrs,
		"links":      map[string]any{"self": base + "/api/profiles/" + p.id + "/"},
	}
}

// consentJSON is a channel's marketing consent (EmailMarketing, SMSMarketing) with its
// can_receive field named canReceive.
func consentJSON(c *klaviyo.Consent, canReceive string) map[string]any {
	if c == nil {
		c = &klaviyo.Consent{Consent: "NEVER_SUBSCRIBED"}
	}
	return map[string]any{
		canReceive:          c.CanReceive,
		"consent":           c.Consent,
		"consent_timestamp": nullTime(c.Timestamp),
		"method":            nullable(c.Method),
		"method_detail":     nullable(c.MethodDetail),
		"last_updated":      nullTime(c.Timestamp),
	}
}

// getEvents answers GET /api/events: the account's events, all or those of one profile
// (filter=equals(profile_id,"…")), sorted by datetime or timestamp either way (oldest
// first by default), in pages of page[size] with an offset for cursor, and with their
// metrics under included when include names metric.
func (s *Server) getEvents(c *call) answer {
	filter := c.query.Get("filter")
	var profileID string
	if filter != "" {
		_, v, ok := parseFilter(filter, "profile_id")
		if !ok {
			return notSimulatedFilter(filter, "profile_id")
		}
		profileID = v
	}
	size := pageSize(c.query, 200)
	offset := 0
	if cur := c.query.Get("page[cursor]"); cur != "" {
		n, err := strconv.Atoi(cur)
		if err != nil || n < 0 {
			return answer{status: http.StatusBadRequest, errors: []apiError{invalid("page[cursor] is not a cursor this server gave.", "")}}
		}
		offset = n
	}
	includeMetric := slices.Contains(listParam(c.query, "include"), "metric")

	s.mu.Lock()
	defer s.mu.Unlock()
	a := c.account
	var target *profile
	if profileID != "" {
		if target = a.byID[profileID]; target == nil {
			return answer{status: http.StatusOK, body: map[string]any{"data": []any{}, "links": map[string]any{"self": c.base + "/api/events?" + c.query.Encode()}}}
		}
	}
	idx := a.eventOrder(target, strings.HasPrefix(c.query.Get("sort"), "-"))
	total := len(idx)
	idx = idx[min(offset, total):min(offset+size, total)]

	data := make([]any, 0, len(idx))
	included := []any{}
	seen := map[string]bool{}
	for _, i := range idx {
		e := a.events[i]
		mid := a.metricID(e.Metric)
		data = append(data, a.eventResource(c.base, i, mid))
		if includeMetric && !seen[mid] {
			seen[mid] = true
			included = append(included, metricResource(c.base, mid, e.Metric))
		}
	}
	links := map[string]any{"self": c.base + "/api/events?" + c.query.Encode()}
	if offset+size < total {
		links["next"] = eventsPage(c, offset+size)
	}
	body := map[string]any{"data": data, "links": links}
	if includeMetric {
		body["included"] = included
	}
	return answer{status: http.StatusOK, body: body}
}

// eventOrder is the indexes into a.events of target's events, or of all of them when
// target is nil, sorted by time and then by arrival, newest first when desc. It gives
// indexes rather than events because an event's id is its index (see eventResource).
func (a *account) eventOrder(target *profile, desc bool) []int {
	var idx []int
	for i, e := range a.events {
		if target == nil || identityOf(e.Profile) == target.identity {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(x, y int) int {
		o := cmp.Or(a.events[x].Time.Compare(a.events[y].Time), cmp.Compare(x, y))
		if desc {
			return -o
		}
		return o
	})
	return idx
}

// eventResource is the event at index i of a.events as GET /api/events answers it, with
// mid the id of its metric. Its id is EV and its index from 1, so it stays the same from
// one request to the next.
func (a *account) eventResource(base string, i int, mid string) map[string]any {
	e := a.events[i]
	id := fmt.Sprintf("EV%08d", i+1)
	rel := map[string]any{"metric": map[string]any{"data": map[string]any{"type": "metric", "id": mid}}}
	if p := a.profiles[identityOf(e.Profile)]; p != nil {
		rel["profile"] = map[string]any{"data": map[string]any{"type": "profile", "id": p.id}}
	}
	return map[string]any{
		"type": "event",
		"id":   id,
		"attributes": map[string]any{
			"timestamp":        e.Time.Unix(),
			"datetime":         e.Time.UTC().Format(time.RFC3339),
			"event_properties": eventProperties(e),
		},
		"relationships": rel,
		"links":         map[string]any{"self": base + "/api/events/" + id + "/"},
	}
}

// eventProperties are e's properties as Klaviyo reports them: a copy, with the value and
// unique id the event was sent with under $value and $event_id.
func eventProperties(e klaviyo.Event) map[string]any {
	props := cloneProperties(e.Properties)
	if props == nil {
		props = map[string]any{}
	}
	if e.Value != nil {
		props["$value"] = *e.Value
	}
	if e.UniqueID != "" {
		props["$event_id"] = e.UniqueID
	}
	return props
}

// metricResource is the metric called name, with id mid, as included in GET /api/events.
func metricResource(base, mid, name string) map[string]any {
	return map[string]any{
		"type":       "metric",
		"id":         mid,
		"attributes": map[string]any{"name": name},
		"links":      map[string]any{"self": base + "/api/metrics/" + mid + "/"},
	}
}

// eventsPage is the link to the page of GET /api/events that starts at offset: the same
// request with offset for cursor.
func eventsPage(c *call, offset int) string {
	next := url.Values{}
	for k, v := range c.query {
		next[k] = v
	}
	next.Set("page[cursor]", strconv.Itoa(offset))
	return c.base + "/api/events?" + next.Encode()
}

// getSegmentsForProfile answers GET /api/profiles/{id}/segments.
func (s *Server) getSegmentsForProfile(c *call) answer {
	return s.memberships(c, "segment", func(d ProfileDetails) []string { return d.Segments })
}

// getListsForProfile answers GET /api/profiles/{id}/lists.
func (s *Server) getListsForProfile(c *call) answer {
	return s.memberships(c, "list", func(d ProfileDetails) []string { return d.Lists })
}

func (s *Server) memberships(c *call, kind string, names func(ProfileDetails) []string) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := c.account
	id := c.params["id"]
	p := a.byID[id]
	if p == nil {
		return answer{status: http.StatusNotFound, errors: []apiError{{Code: "not_found", Title: "Not found.", Detail: fmt.Sprintf("A profile with id %s does not exist.", id)}}}
	}
	created := nullTime(p.created)
	data := make([]any, 0)
	for _, name := range names(p.details) {
		gid := a.groupID(kind, name)
		attrs := map[string]any{"name": name, "created": created, "updated": created}
		if kind == "segment" {
			attrs["is_active"], attrs["is_processing"], attrs["is_starred"] = true, false, false
		} else {
			attrs["opt_in_process"] = "single_opt_in"
		}
		data = append(data, map[string]any{
			"type": kind, "id": gid, "attributes": attrs,
			"links": map[string]any{"self": c.base + "/api/" + kind + "s/" + gid + "/"},
		})
	}
	return answer{status: http.StatusOK, body: map[string]any{
		"data":  data,
		"links": map[string]any{"self": c.base + "/api/profiles/" + id + "/" + kind + "s"},
	}}
}
