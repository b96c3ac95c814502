package zenklav

import "time"

// MetricEvent is one event to record in Klaviyo: a metric on a customer's profile.
type MetricEvent struct {
	// Metric is the metric's name, e.g. MetricOpened; Klaviyo creates it on first use.
	Metric     string
	Profile    ProfileKey
	Properties map[string]any
	// Time is when the event happened; Klaviyo uses the time it receives it when zero.
	Time time.Time
	// UniqueID deduplicates: Klaviyo records only the first event with the same profile,
	// metric and unique id. Without one it uses the time to the second, so two events of
	// one metric for one profile in the same second collapse; always set it.
	UniqueID string
	Value    *float64
	// Backfill records the event without triggering flows: for history, and for events
	// so late that a flow would greet the customer about something long past.
	Backfill bool
}

// OpenTickets is one requester's count of open tickets, for their Klaviyo profile's
// OpenTicketsProperty.
type OpenTickets struct {
	Profile ProfileKey
	Count   int
}

// Profile is a customer's profile as Klaviyo keeps it: what the agent sidebar shows of a
// customer. Empty strings and zero times are what Klaviyo left null.
type Profile struct {
	ID            string
	Email         string
	PhoneNumber   string
	ExternalID    string
	FirstName     string
	LastName      string
	Organization  string
	Title         string
	Locale        string
	Image         string
	Location      Location
	Properties    map[string]any
	Created       time.Time
	Updated       time.Time
	LastEventDate time.Time
	// EmailConsent and SMSConsent are the marketing consent of each channel; nil when
	// Klaviyo sent no subscriptions.
	EmailConsent *Consent
	SMSConsent   *Consent
	// Predictive is Klaviyo's predictive analytics; nil when it sent none. Its fields are
	// nil where Klaviyo has no prediction (too few orders, or no plan that includes them).
	Predictive *Predictions
}

// Location is where a profile is, as far as Klaviyo knows.
type Location struct {
	Address1 string
	Address2 string
	City     string
	Region   string
	Zip      string
	Country  string
	Timezone string
}

// Consent is a profile's marketing consent on one channel.
type Consent struct {
	// Consent is Klaviyo's word for it: "SUBSCRIBED", "UNSUBSCRIBED", "NEVER_SUBSCRIBED".
	Consent string
	// CanReceive says whether Klaviyo would send the profile marketing on the channel now
	// (can_receive_email_marketing, can_receive_sms_marketing).
	CanReceive bool
	// Timestamp is when the consent was given or withdrawn; zero when Klaviyo has no time.
	Timestamp    time.Time
	Method       string
	MethodDetail string
}

// Predictions are Klaviyo's predictive analytics of a profile.
type Predictions struct {
	HistoricCLV              *float64
	PredictedCLV             *float64
	TotalCLV                 *float64
	HistoricNumberOfOrders   *float64
	PredictedNumberOfOrders  *float64
	AverageDaysBetweenOrders *float64
	AverageOrderValue        *float64
	ChurnProbability         *float64
	ExpectedDateOfNextOrder  *time.Time
	RankedChannelAffinity    []string
}

// RecordedEvent is an event Klaviyo holds for a profile.
type RecordedEvent struct {
	ID string
	// Metric is the metric's name; empty when Klaviyo could not resolve the metric.
	Metric string
	Time   time.Time
	// Value is the event's "$value" property, nil when it has none.
	Value      *float64
	Properties map[string]any
}

// Membership is a Klaviyo list or segment a profile belongs to.
type Membership struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}
