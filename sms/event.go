package sms

import (
	"time"

	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
)

// The kinds of SMS event.
const (
	kindInbound = schemas.SMSInbound
	kindSent    = schemas.SMSSent
	kindFailed  = schemas.SMSFailed
)

// event is an sms_event.v1 as the role reads it.
type event struct {
	Connection    string
	EventID       string
	Kind          string
	CustomerPhone string
	Body          string
	SenderType    string
	Media         []string // content types
	Campaign      string
	Flow          string
	At            time.Time // when Klaviyo says it happened
	Received      time.Time // when zenklav took the webhook in
}

// key is the conversation's: the connection and the customer's phone, as the message's key.
func (e *event) key() string { return e.Connection + "/" + e.CustomerPhone }

// decode reads an sms_event.v1 message.
func decode(m kafka.Message) (*event, error) {
	var s schemas.SMSEvent
	if err := schemas.DecodeSMSEvent(m.Value, &s); err != nil {
		return nil, err
	}
	e := &event{
		Connection: s.Connection, EventID: s.EventID, Kind: s.Kind, CustomerPhone: s.CustomerPhone, Body: s.Body,
		SenderType: s.SenderType, Campaign: s.CampaignName, Flow: s.FlowName, At: s.OccurredAt, Received: s.ReceivedAt,
	}
	if e.At.IsZero() {
		e.At = s.ReceivedAt
	}
	for _, m := range s.Media {
		ct := m.ContentType
		if ct == "" {
			ct = "unknown type"
		}
		e.Media = append(e.Media, ct)
	}
	return e, nil
}
