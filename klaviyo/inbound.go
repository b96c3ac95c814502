// How a system webhook's items become SMS events, and the assumption it rests on.
//
// Klaviyo tells the partners it approved for its Conversations API of a customer's inbound
// text by a webhook whose topic and fields it does not publish. Until zenklav has that access,
// this file assumes the topic is zenklav.TopicInboundSMS ("event:klaviyo.inbound_sms") and the
// payload is shaped like a Get Event answer, as every system webhook's is, with
// event_properties {message_id, conversation_id, from_phone_number, to_phone_number, body,
// sender_type, media [{content_type, url}]} and the profile in relationships.profile.data.id.
// When Klaviyo's real topic differs, a connection names it in sms.inbound_topics and nothing
// else changes; when its fields differ, SMSEventOf and the small readers below are the one
// place to change (docs/sms.md, "The inbound webhook"). The public topics of the SMS Klaviyo
// sent (event:klaviyo.sent_sms, event:klaviyo.failed_to_deliver_sms) are read with the same
// names, and whatever they leave out is left out of the event.

package klaviyo

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

// InboundTarget says whose webhook items SMSEventOf maps.
type InboundTarget struct {
	Connection string
	// InboundTopics are further topics read as a customer's inbound text, besides
	// zenklav.TopicInboundSMS: the connection's sms.inbound_topics.
	InboundTopics []string
	ReceivedAt    time.Time
}

// Why an item became no SMS event: SMSEventOf's result when it returns none. An item is never
// an error: refusing the request would have Klaviyo send the whole batch again, forever.
const (
	ItemIgnored        = "ignored"           // a topic zenklav does not read: acknowledged
	ItemNoExternalID   = "no_external_id"    // no id to deduplicate it by
	ItemNoPhone        = "no_customer_phone" // no E.164 customer number: no conversation to key it into
	ItemMalformedEvent = "malformed_payload" // a payload that is not a JSON object
)

// SMSEventOf maps one webhook item to the SMS event it tells of: a customer's text (kind
// inbound), or an SMS Klaviyo sent them (sent) or could not deliver (failed). result is the
// event's kind, or, when ev is nil, why the item is none (ItemIgnored, …). What the event
// cannot hold is cut (body, names) or left out (ids, phones, sender types it does not know),
// so every event it returns is a valid sms_event.v1.
func SMSEventOf(item WebhookItem, t InboundTarget) (ev *schemas.SMSEvent, result string) {
	kind := smsKind(item.Topic, t.InboundTopics)
	if kind == "" || utf8.RuneCountInString(item.Topic) > schemas.MaxSMSTopic {
		return nil, ItemIgnored
	}
	if !validExternalID(item.ExternalID) {
		return nil, ItemNoExternalID
	}
	root := object(item.Payload)
	if root == nil {
		return nil, ItemMalformedEvent
	}
	attrs := object(root["attributes"])
	props := object(attrs["event_properties"])
	// An inbound text is from the customer to the brand; a sent one the other way round.
	customer, brand := phone(props["from_phone_number"]), phone(props["to_phone_number"])
	if kind != schemas.SMSInbound {
		customer, brand = brand, customer
	}
	if customer == "" {
		return nil, ItemNoPhone
	}
	ev = &schemas.SMSEvent{
		Schema: schemas.SMSEventV1, Connection: t.Connection, EventID: "klaviyo:" + item.ExternalID,
		Kind: kind, Topic: item.Topic, ReceivedAt: t.ReceivedAt.UTC(),
		OccurredAt:    occurredAt(attrs["datetime"], attrs["timestamp"], t.ReceivedAt),
		CustomerPhone: customer, BrandPhone: brand,
		ProfileID:      id(object(object(object(root["relationships"])["profile"])["data"])["id"]),
		Body:           cut(text(props["body"]), schemas.MaxSMSBody),
		SenderType:     senderType(text(props["sender_type"])),
		MessageID:      id(props["message_id"]),
		ConversationID: id(props["conversation_id"]),
		Media:          media(props["media"]),
	}
	if kind != schemas.SMSInbound {
		ev.CampaignName = cut(text(props["campaign_name"]), schemas.MaxSMSName)
		ev.FlowName = cut(text(props["flow_name"]), schemas.MaxSMSName)
	}
	return ev, kind
}

// smsKind is the kind of SMS event a topic carries, or "" for a topic zenklav does not read.
func smsKind(topic string, inbound []string) string {
	switch topic {
	case zenklav.TopicSentSMS:
		return schemas.SMSSent
	case zenklav.TopicFailedToDeliverSMS:
		return schemas.SMSFailed
	case zenklav.TopicInboundSMS:
		return schemas.SMSInbound
	}
	for _, t := range inbound {
		if t != "" && t == topic {
			return schemas.SMSInbound
		}
	}
	return ""
}

// validExternalID reports whether id can make an event_id: 1 to 128 printable ASCII
// characters, as Klaviyo's event ids are.
func validExternalID(id string) bool {
	if len(id) == 0 || len(id) > schemas.MaxSMSEventID {
		return false
	}
	for i := range len(id) {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// object is raw as a JSON object's members, or nil when it is anything else: a field of
// another shape reads as absent, so a payload degrades rather than fails.
func object(raw json.RawMessage) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}

// text is raw as a string, or "" when it is not one.
func text(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// phone is raw as an E.164 number, or "" when it is none.
func phone(raw json.RawMessage) string { return zenklav.E164(text(raw)) }

// id is raw as an id: "" when it is not a string or is too long to be one (a cut id would
// name another thing).
func id(raw json.RawMessage) string {
	s := text(raw)
	if utf8.RuneCountInString(s) > schemas.MaxSMSID {
		return ""
	}
	return s
}

// cut shortens s to at most n characters, the last of them an ellipsis when it cut.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	runes := []rune(s)
	return string(runes[:n-1]) + "…"
}

// senderType is Klaviyo's sender type as sms_event.v1 names it, "" for one it does not know.
func senderType(s string) string {
	switch s {
	case zenklav.SenderLongCode, zenklav.SenderTollFree, zenklav.SenderShortCode, zenklav.SenderAlpha:
		return s
	case "vanity_short_code": // Klaviyo's sender list has it; it is a short code all the same
		return zenklav.SenderShortCode
	}
	return ""
}

// occurredAt is the event's datetime (ISO 8601), else its timestamp (Unix seconds), in UTC;
// received when neither is a time of the years 1970 to 9999.
func occurredAt(datetime, timestamp json.RawMessage, received time.Time) time.Time {
	if t, err := time.Parse(time.RFC3339, text(datetime)); err == nil && t.UTC().Year() >= 1970 && t.UTC().Year() <= 9999 {
		return t.UTC()
	}
	var unix int64
	if json.Unmarshal(timestamp, &unix) == nil && unix >= 0 && unix < 253402300800 {
		return time.Unix(unix, 0).UTC()
	}
	return received.UTC()
}

// media is an MMS's attachments, at most MaxSMSMedia. An attachment is kept even when its
// fields are not usable, so the sms role still knows there was one; a bare string is its url.
func media(raw json.RawMessage) []schemas.SMSMedia {
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil
	}
	var out []schemas.SMSMedia
	for _, item := range items {
		if len(out) == schemas.MaxSMSMedia {
			break
		}
		var m schemas.SMSMedia
		if o := object(item); o != nil {
			m = schemas.SMSMedia{ContentType: text(o["content_type"]), URL: text(o["url"])}
		} else if m.URL = text(item); m.URL == "" {
			continue
		}
		if utf8.RuneCountInString(m.ContentType) > schemas.MaxSMSMediaType {
			m.ContentType = ""
		}
		if utf8.RuneCountInString(m.URL) > schemas.MaxSMSMediaURL {
			m.URL = ""
		}
		out = append(out, m)
	}
	return out
}
