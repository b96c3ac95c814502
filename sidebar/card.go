// Package sidebar builds the profile card the agent sidebar shows next to a Zendesk ticket:
// who the requester is in Klaviyo (profile, consent, predictions, recent activity, segments
// and lists) and in zenklav's own ticket history. It reads through the interfaces below;
// cmd/zenklav joins them to the Zendesk and Klaviyo clients and the analytics store.
package sidebar

import (
	"strings"
	"time"

	"github.com/zenklav/zenklav"
)

// Card is the sidebar's profile card, as the app page receives it (GET
// /api/v1/sidebar/profile). Sections that could not be read are named in Unavailable and
// left empty, so the page can show what came and say what is missing.
type Card struct {
	Requester zenklav.Person `json:"requester"`
	TicketID  int64          `json:"ticket_id,omitempty"`
	// Klaviyo is what Klaviyo said of the requester: KlaviyoFound, KlaviyoNotFound or
	// KlaviyoUnavailable (the profile could not be read).
	Klaviyo     string       `json:"klaviyo"`
	Profile     *Profile     `json:"profile,omitempty"`
	Activity    []Activity   `json:"activity"`
	Segments    []Membership `json:"segments"`
	Lists       []Membership `json:"lists"`
	Support     *Support     `json:"support,omitempty"`
	Unavailable []string     `json:"unavailable"`
	// CreateProfileURL is where an agent creates a missing profile in Klaviyo.
	CreateProfileURL string `json:"create_profile_url"`
}

// What Card.Klaviyo says.
const (
	KlaviyoFound       = "found"
	KlaviyoNotFound    = "not_found"
	KlaviyoUnavailable = "unavailable"
)

// The card's sections, as Card.Unavailable names them.
const (
	SectionProfile  = "profile"
	SectionActivity = "activity"
	SectionSegments = "segments"
	SectionLists    = "lists"
	SectionSupport  = "support"
)

// Profile is the requester's Klaviyo profile.
type Profile struct {
	ID           string      `json:"id"`
	Name         string      `json:"name,omitempty"`
	Email        string      `json:"email,omitempty"`
	Phone        string      `json:"phone,omitempty"`
	Organization string      `json:"organization,omitempty"`
	Location     *Location   `json:"location,omitempty"`
	EmailConsent *Consent    `json:"email_consent,omitempty"`
	SMSConsent   *Consent    `json:"sms_consent,omitempty"`
	Predictions  *Prediction `json:"predictions,omitempty"`
	URL          string      `json:"url"`
}

// Location is where Klaviyo places the profile.
type Location struct {
	City     string `json:"city,omitempty"`
	Region   string `json:"region,omitempty"`
	Country  string `json:"country,omitempty"`
	Timezone string `json:"timezone,omitempty"`
}

// Consent is the profile's marketing consent on one channel.
type Consent struct {
	// State is ConsentSubscribed, ConsentUnsubscribed or ConsentNever.
	State      string     `json:"state"`
	At         *time.Time `json:"at,omitempty"`
	CanReceive bool       `json:"can_receive"`
}

// Consent states.
const (
	ConsentSubscribed   = "subscribed"
	ConsentUnsubscribed = "unsubscribed"
	ConsentNever        = "never"
)

// Prediction is what Klaviyo predicts of the customer; each field is nil when it has no
// prediction.
type Prediction struct {
	PredictedCLV      *float64 `json:"predicted_clv,omitempty"`
	HistoricCLV       *float64 `json:"historic_clv,omitempty"`
	TotalCLV          *float64 `json:"total_clv,omitempty"`
	ChurnProbability  *float64 `json:"churn_probability,omitempty"`
	ExpectedNextOrder string   `json:"expected_next_order,omitempty"` // a date, YYYY-MM-DD
	AverageOrderValue *float64 `json:"average_order_value,omitempty"`
}

// Activity is one of the profile's recent Klaviyo events.
type Activity struct {
	Metric string    `json:"metric"`
	Time   time.Time `json:"time"`
	Value  *float64  `json:"value,omitempty"`
}

// Membership is a Klaviyo segment or list.
type Membership = zenklav.Membership

// Support is the requester's ticket history from ClickHouse.
type Support struct {
	Open         int       `json:"open"`
	Recent       int       `json:"recent"`
	RecentDays   int       `json:"recent_days"`
	Total        int       `json:"total"`
	LastResolved *Resolved `json:"last_resolved,omitempty"`
}

// Resolved is a ticket and when it was closed.
type Resolved struct {
	TicketID int64     `json:"ticket_id"`
	Subject  string    `json:"subject"`
	At       time.Time `json:"at"`
}

// profileView is the card's view of a Klaviyo profile; the caller adds its URL.
func profileView(r zenklav.Profile) Profile {
	p := Profile{
		ID: r.ID, Email: r.Email, Phone: r.PhoneNumber, Organization: r.Organization,
		Name:         strings.TrimSpace(r.FirstName + " " + r.LastName),
		EmailConsent: consentView(r.EmailConsent), SMSConsent: consentView(r.SMSConsent),
	}
	if l := r.Location; l.City != "" || l.Region != "" || l.Country != "" || l.Timezone != "" {
		p.Location = &Location{City: l.City, Region: l.Region, Country: l.Country, Timezone: l.Timezone}
	}
	if pa := r.Predictive; pa != nil {
		pr := Prediction{
			PredictedCLV: pa.PredictedCLV, HistoricCLV: pa.HistoricCLV, TotalCLV: pa.TotalCLV,
			ChurnProbability: pa.ChurnProbability, AverageOrderValue: pa.AverageOrderValue,
		}
		if pa.ExpectedDateOfNextOrder != nil {
			pr.ExpectedNextOrder = pa.ExpectedDateOfNextOrder.Format(time.DateOnly)
		}
		if pr != (Prediction{}) {
			p.Predictions = &pr
		}
	}
	return p
}

func consentView(c *zenklav.Consent) *Consent {
	if c == nil {
		return nil
	}
	out := &Consent{State: ConsentState(c.Consent), CanReceive: c.CanReceive}
	if !c.Timestamp.IsZero() {
		t := c.Timestamp.UTC()
		out.At = &t
	}
	return out
}

func activityView(events []zenklav.RecordedEvent) []Activity {
	out := make([]Activity, len(events))
	for i, e := range events {
		out[i] = Activity{Metric: e.Metric, Time: e.Time.UTC(), Value: e.Value}
	}
	return out
}

// supportView is the card's support history, over the last RecentDays days.
func supportView(h zenklav.SupportHistory) *Support {
	out := &Support{Open: h.Open, Recent: h.Recent, Total: h.Total, RecentDays: RecentDays}
	if r := h.LastResolved; r.TicketID != 0 {
		out.LastResolved = &Resolved{TicketID: r.TicketID, Subject: r.Subject, At: r.At.UTC()}
	}
	return out
}
