package schemas

import (
	"errors"
	"fmt"
	"time"

	gojson "github.com/goccy/go-json"
)

// SMSEventV1 names the contract: the value of every SMS event's schema field, and of its
// messages' schema header.
const SMSEventV1 = "sms_event.v1"

// SMS event kinds: which way the SMS went.
const (
	SMSInbound = "inbound" // the customer texted the brand
	SMSSent    = "sent"    // Klaviyo sent the customer a campaign or flow SMS
	SMSFailed  = "failed"  // Klaviyo could not deliver one
)

// Limits of sms_event.v1 (sms_event.v1.json says them too): what the producer cuts or drops to
// stay within them.
const (
	MaxSMSBody      = 4096 // characters of body; an SMS is at most about 1,600
	MaxSMSName      = 512  // characters of campaign_name and flow_name
	MaxSMSID        = 256  // characters of profile_id, message_id, conversation_id
	MaxSMSMedia     = 10   // attachments; MMS carries at most 10
	MaxSMSMediaURL  = 2048 // characters of a media url
	MaxSMSMediaType = 255  // characters of a media content_type
	MaxSMSTopic     = 256  // characters of topic
	MaxSMSEventID   = 128  // characters of event_id after its "klaviyo:" prefix
)

// SMSEvent is sms_event.v1: one SMS of a customer's conversation with a brand.
type SMSEvent struct {
	Schema     string `json:"schema"` // SMSEventV1
	Connection string `json:"connection"`
	// EventID is "klaviyo:" + the webhook item's external_id: stable across Klaviyo's
	// redeliveries, so it is the consumers' dedupe key.
	EventID    string    `json:"event_id"`
	Kind       string    `json:"kind"`
	ReceivedAt time.Time `json:"received_at"`
	// OccurredAt is when Klaviyo says the SMS happened, else ReceivedAt.
	OccurredAt time.Time `json:"occurred_at"`
	// CustomerPhone (E.164) is the sender of an inbound text, the recipient of a sent one.
	CustomerPhone  string     `json:"customer_phone"`
	BrandPhone     string     `json:"brand_phone,omitempty"`
	ProfileID      string     `json:"profile_id,omitempty"`
	Body           string     `json:"body,omitempty"`
	SenderType     string     `json:"sender_type,omitempty"` // zenklav.SenderLongCode, …
	MessageID      string     `json:"message_id,omitempty"`
	ConversationID string     `json:"conversation_id,omitempty"`
	Media          []SMSMedia `json:"media,omitempty"`
	CampaignName   string     `json:"campaign_name,omitempty"`
	FlowName       string     `json:"flow_name,omitempty"`
	// Topic is the Klaviyo webhook topic the event came in, as sent.
	Topic string `json:"topic"`
}

// SMSMedia is one attachment of an MMS.
type SMSMedia struct {
	ContentType string `json:"content_type,omitempty"`
	URL         string `json:"url,omitempty"`
}

// Key is the Kafka key of the event: one customer's conversation with one connection shares
// a partition and stays in order.
func (e *SMSEvent) Key() string { return e.Connection + "/" + e.CustomerPhone }

// ValidateSMSEventJSON checks an encoded SMS event against sms_event.v1.
func ValidateSMSEventJSON(data []byte) error {
	return validate(smsEventSchema, SMSEventV1, data)
}

// Marshal encodes e and validates the result against sms_event.v1, so nothing that breaks
// the contract is ever produced.
func (e *SMSEvent) Marshal() ([]byte, error) {
	data, err := gojson.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode sms event: %w", err)
	}
	if err := ValidateSMSEventJSON(data); err != nil {
		return nil, err
	}
	return data, nil
}

// DecodeSMSEvent decodes an sms_event.v1 message as a consumer reads it, and refuses one that
// lacks what every consumer needs of it. Like DecodeTicketEvent it does not validate against
// the schema: the producer did.
func DecodeSMSEvent(data []byte, e *SMSEvent) error {
	if err := gojson.Unmarshal(data, e); err != nil {
		return fmt.Errorf("not an sms_event.v1: %w", err)
	}
	if e.EventID == "" || e.Connection == "" || e.CustomerPhone == "" || e.Kind == "" {
		return errors.New("sms event lacks event_id, connection, customer_phone or kind")
	}
	return nil
}
