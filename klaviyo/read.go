package klaviyo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
)

// maxReadBody bounds what the client reads from one answer to a read: a page of events
// carries each event's properties.
const maxReadBody = 16 << 20

// MaxEventsPage is the most events Klaviyo returns in one page of GET /api/events.
const MaxEventsPage = 1000

// profileID is the shape of a Klaviyo profile id (a ULID) and of anything safe to put in a
// path segment and a filter string.
var profileID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// The records Klaviyo answers reads with are the domain's.
type (
	// ProfileRecord is a profile as Klaviyo keeps it.
	ProfileRecord = zenklav.Profile
	// Location is where a profile is, as far as Klaviyo knows.
	Location = zenklav.Location
	// Consent is a profile's marketing consent on one channel.
	Consent = zenklav.Consent
	// PredictiveAnalytics are Klaviyo's predictions about a profile.
	PredictiveAnalytics = zenklav.Predictions
	// RecordedEvent is an event Klaviyo holds for a profile.
	RecordedEvent = zenklav.RecordedEvent
	// Membership is a list or segment a profile belongs to.
	Membership = zenklav.Membership
)

// FindProfile looks up the profile p names (GET /api/profiles), by its email, else its
// phone number, else its external id, with its subscriptions and predictive analytics.
// found is false, with a nil error, when Klaviyo has no such profile.
func (c *Client) FindProfile(ctx context.Context, p Profile) (rec ProfileRecord, found bool, err error) {
	const op = "find profile"
	if err := validateProfile(p); err != nil {
		return ProfileRecord{}, false, zenklav.Wrap(zenklav.EINVALID, err, "%s", op)
	}
	field, value := "email", p.Email
	switch {
	case p.Email != "":
	case p.PhoneNumber != "":
		field, value = "phone_number", p.PhoneNumber
	default:
		field, value = "external_id", p.ExternalID
	}
	return c.findProfile(ctx, op, "GET /api/profiles+predictive_analytics", field, value, "subscriptions,predictive_analytics")
}

// findProfile is the one profile lookup (GET /api/profiles?filter=equals(field,"value")):
// the first profile with that identifier, with the additional fields asked for, counted
// against the bucket named bucketKey, since Klaviyo's limit depends on those fields.
func (c *Client) findProfile(ctx context.Context, op, bucketKey, field, value, additional string) (ProfileRecord, bool, error) {
	// Klaviyo's filter language quotes strings and documents no escape: a value that
	// would end the string is refused rather than sent as a different filter.
	if strings.ContainsAny(value, "\"\\") {
		return ProfileRecord{}, false, zenklav.Errorf(zenklav.EINVALID, "%s: %s contains a quote or backslash", op, field)
	}
	q := url.Values{}
	q.Set("filter", fmt.Sprintf("equals(%s,%q)", field, value))
	q.Set("additional-fields[profile]", additional)
	q.Set("page[size]", "1")
	var doc struct {
		Data []profileResource `json:"data"`
	}
	if err := c.get(ctx, op, bucketKey, "/api/profiles", q, &doc); err != nil {
		return ProfileRecord{}, false, err
	}
	if len(doc.Data) == 0 {
		return ProfileRecord{}, false, nil
	}
	return doc.Data[0].record(), true, nil
}

// RecentEvents returns the last n (1 to MaxEventsPage) events of the profile with the
// given id, newest first, with their metric names (GET /api/events).
func (c *Client) RecentEvents(ctx context.Context, profileID string, n int) ([]RecordedEvent, error) {
	const op = "recent events"
	if err := checkID(profileID); err != nil {
		return nil, zenklav.Wrap(zenklav.EINVALID, err, "%s", op)
	}
	if n < 1 || n > MaxEventsPage {
		return nil, zenklav.Errorf(zenklav.EINVALID, "%s: %d events asked for; Klaviyo pages 1 to %d", op, n, MaxEventsPage)
	}
	q := url.Values{}
	q.Set("filter", fmt.Sprintf("equals(profile_id,%q)", profileID))
	q.Set("sort", "-datetime")
	q.Set("include", "metric")
	q.Set("fields[metric]", "name")
	q.Set("fields[event]", "datetime,event_properties")
	q.Set("page[size]", strconv.Itoa(n))
	var doc struct {
		Data []struct {
			ID         string `json:"id"`
			Attributes struct {
				Datetime        looseTime      `json:"datetime"`
				EventProperties map[string]any `json:"event_properties"`
			} `json:"attributes"`
			Relationships struct {
				Metric struct {
					Data *struct {
						ID string `json:"id"`
					} `json:"data"`
				} `json:"metric"`
			} `json:"relationships"`
		} `json:"data"`
		Included []struct {
			Type       string `json:"type"`
			ID         string `json:"id"`
			Attributes struct {
				Name string `json:"name"`
			} `json:"attributes"`
		} `json:"included"`
	}
	if err := c.get(ctx, op, "GET /api/events", "/api/events", q, &doc); err != nil {
		return nil, err
	}
	metrics := map[string]string{}
	for _, inc := range doc.Included {
		if inc.Type == "metric" {
			metrics[inc.ID] = inc.Attributes.Name
		}
	}
	out := make([]RecordedEvent, 0, len(doc.Data))
	for _, d := range doc.Data {
		e := RecordedEvent{ID: d.ID, Time: d.Attributes.Datetime.Time, Properties: d.Attributes.EventProperties}
		if m := d.Relationships.Metric.Data; m != nil {
			e.Metric = metrics[m.ID]
		}
		e.Value = numberOf(e.Properties["$value"])
		out = append(out, e)
	}
	return out, nil
}

// ProfileSegments returns the segments the profile with the given id belongs to
// (GET /api/profiles/{id}/segments).
func (c *Client) ProfileSegments(ctx context.Context, profileID string) ([]Membership, error) {
	return c.memberships(ctx, "profile segments", "segments", "segment", profileID)
}

// ProfileLists returns the lists the profile with the given id belongs to
// (GET /api/profiles/{id}/lists).
func (c *Client) ProfileLists(ctx context.Context, profileID string) ([]Membership, error) {
	return c.memberships(ctx, "profile lists", "lists", "list", profileID)
}

func (c *Client) memberships(ctx context.Context, op, kind, typ, profileID string) ([]Membership, error) {
	if err := checkID(profileID); err != nil {
		return nil, zenklav.Wrap(zenklav.EINVALID, err, "%s", op)
	}
	q := url.Values{}
	q.Set("fields["+typ+"]", "name")
	var doc struct {
		Data []struct {
			Type       string `json:"type"`
			ID         string `json:"id"`
			Attributes struct {
				Name string `json:"name"`
			} `json:"attributes"`
		} `json:"data"`
	}
	bucket := "GET /api/profiles/{id}/" + kind
	if err := c.get(ctx, op, bucket, "/api/profiles/"+profileID+"/"+kind, q, &doc); err != nil {
		return nil, err
	}
	out := make([]Membership, 0, len(doc.Data))
	for _, d := range doc.Data {
		out = append(out, Membership{ID: d.ID, Name: d.Attributes.Name})
	}
	return out, nil
}

func checkID(id string) error {
	if !profileID.MatchString(id) {
		return fmt.Errorf("profile id %q is not a Klaviyo id", id)
	}
	return nil
}

// get asks for path with query and decodes the 200 answer's JSON:API document into out,
// ignoring fields it does not name. It waits for the rate limit of the bucket named
// bucketKey (method and path template) first.
func (c *Client) get(ctx context.Context, op, bucketKey, path string, query url.Values, out any) error {
	answer, err := c.do(ctx, op, http.MethodGet, bucketKey, path, query, nil, maxReadBody+1)
	if err != nil {
		return err
	}
	if len(answer) > maxReadBody {
		return zenklav.Errorf(zenklav.EINTERNAL, "%s: answer is larger than %d bytes", op, maxReadBody)
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return zenklav.Wrap(zenklav.EINTERNAL, err, "%s: decode answer", op)
	}
	return nil
}

// Wire shape of ProfileResponsePluralConversationsObjectResource, with the additional
// fields.
type (
	profileResource struct {
		ID         string `json:"id"`
		Attributes struct {
			Email         string         `json:"email"`
			PhoneNumber   string         `json:"phone_number"`
			ExternalID    string         `json:"external_id"`
			FirstName     string         `json:"first_name"`
			LastName      string         `json:"last_name"`
			Organization  string         `json:"organization"`
			Title         string         `json:"title"`
			Locale        string         `json:"locale"`
			Image         string         `json:"image"`
			Created       looseTime      `json:"created"`
			Updated       looseTime      `json:"updated"`
			LastEventDate looseTime      `json:"last_event_date"`
			Properties    map[string]any `json:"properties"`
			Location      struct {
				Address1 string `json:"address1"`
				Address2 string `json:"address2"`
				City     string `json:"city"`
				Region   string `json:"region"`
				Zip      string `json:"zip"`
				Country  string `json:"country"`
				Timezone string `json:"timezone"`
			} `json:"location"`
			Subscriptions *struct {
				Email struct {
					Marketing *consentJSON `json:"marketing"`
				} `json:"email"`
				SMS struct {
					Marketing *consentJSON `json:"marketing"`
				} `json:"sms"`
			} `json:"subscriptions"`
			Predictive *struct {
				HistoricCLV              *float64  `json:"historic_clv"`
				PredictedCLV             *float64  `json:"predicted_clv"`
				TotalCLV                 *float64  `json:"total_clv"`
				HistoricNumberOfOrders   *float64  `json:"historic_number_of_orders"`
				PredictedNumberOfOrders  *float64  `json:"predicted_number_of_orders"`
				AverageDaysBetweenOrders *float64  `json:"average_days_between_orders"`
				AverageOrderValue        *float64  `json:"average_order_value"`
				ChurnProbability         *float64  `json:"churn_probability"`
				ExpectedDateOfNextOrder  looseTime `json:"expected_date_of_next_order"`
				RankedChannelAffinity    []string  `json:"ranked_channel_affinity"`
			} `json:"predictive_analytics"`
		} `json:"attributes"`
	}
	consentJSON struct {
		CanReceiveEmail *bool     `json:"can_receive_email_marketing"`
		CanReceiveSMS   *bool     `json:"can_receive_sms_marketing"`
		Consent         string    `json:"consent"`
		Timestamp       looseTime `json:"consent_timestamp"`
		Method          string    `json:"method"`
		MethodDetail    string    `json:"method_detail"`
	}
)

func (r profileResource) record() ProfileRecord {
	a := r.Attributes
	rec := ProfileRecord{
		ID: r.ID, Email: a.Email, PhoneNumber: a.PhoneNumber, ExternalID: a.ExternalID,
		FirstName: a.FirstName, LastName: a.LastName, Organization: a.Organization, Title: a.Title,
		Locale: a.Locale, Image: a.Image, Properties: a.Properties,
		Created: a.Created.Time, Updated: a.Updated.Time, LastEventDate: a.LastEventDate.Time,
		Location: Location(a.Location),
	}
	if s := a.Subscriptions; s != nil {
		rec.EmailConsent = s.Email.Marketing.consent()
		rec.SMSConsent = s.SMS.Marketing.consent()
	}
	if p := a.Predictive; p != nil {
		rec.Predictive = &PredictiveAnalytics{
			HistoricCLV: p.HistoricCLV, PredictedCLV: p.PredictedCLV, TotalCLV: p.TotalCLV,
			HistoricNumberOfOrders: p.HistoricNumberOfOrders, PredictedNumberOfOrders: p.PredictedNumberOfOrders,
			AverageDaysBetweenOrders: p.AverageDaysBetweenOrders, AverageOrderValue: p.AverageOrderValue,
			ChurnProbability: p.ChurnProbability, RankedChannelAffinity: p.RankedChannelAffinity,
		}
		if t := p.ExpectedDateOfNextOrder.Time; !t.IsZero() {
			rec.Predictive.ExpectedDateOfNextOrder = &t
		}
	}
	return rec
}

func (c *consentJSON) consent() *Consent {
	if c == nil {
		return nil
	}
	out := &Consent{Consent: c.Consent, Timestamp: c.Timestamp.Time, Method: c.Method, MethodDetail: c.MethodDetail}
	switch {
	case c.CanReceiveEmail != nil:
		out.CanReceive = *c.CanReceiveEmail
	case c.CanReceiveSMS != nil:
		out.CanReceive = *c.CanReceiveSMS
	}
	return out
}

// looseTime decodes Klaviyo's datetimes: RFC 3339, or without a zone (read as UTC), or a
// date alone. Null and anything else it cannot read decode as the zero time rather than
// failing the whole answer over one field the sidebar can do without.
type looseTime struct{ time.Time }

func (t *looseTime) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) != nil || s == "" {
		return nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05", time.DateOnly} {
		if v, err := time.Parse(layout, s); err == nil {
			t.Time = v
			return nil
		}
	}
	return nil
}

// numberOf reads an event's "$value": a JSON number, or a string holding one.
func numberOf(v any) *float64 {
	switch v := v.(type) {
	case float64:
		return &v
	case string:
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return &f
		}
	}
	return nil
}
