package klaviyotest

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
)

// System webhooks, as Klaviyo sends them (developers.klaviyo.com, "Working with system
// webhooks"): a JSON body {"data":[{"external_id","topic","payload"}],"meta":{…}} whose
// payloads have the shape of a Get Event answer, signed with the webhook's secret. The
// inbound-SMS topic and its event properties are zenklav's assumption (zenklav.TopicInboundSMS;
// Klaviyo gives the real ones to approved partners only); the envelope and the signature
// follow the docs and two independent verifiers.

// Webhook headers.
const ()

// webhookTimeout bounds one delivery: the receiver answers once Kafka has the items.
const webhookTimeout = 10 * time.Second

// DefaultWebhookAccountID and DefaultWebhookID are the meta of the webhooks the simulator
// sends until SetWebhookIDs changes them: a Klaviyo account id (six characters) and a webhook
// id (64 hex digits), shaped like Klaviyo's.
const (
	DefaultWebhookAccountID = "KlvSim"
	DefaultWebhookID        = "5a1d0c0ffee0b0a710c0de5e7f1e1d5a1d0c0ffee0b0a710c0de5e7f1e1d0001"
)

// WebhookItem is one entry of a system webhook's data list. Payload is the event, shaped as
// Get Event answers it.
type WebhookItem struct {
	ExternalID string          `json:"external_id"`
	Topic      string          `json:"topic"`
	Payload    json.RawMessage `json:"payload"`
}

// webhookMeta is the envelope's meta.
type webhookMeta struct {
	AccountID string `json:"klaviyo_account_id"`
	WebhookID string `json:"klaviyo_webhook_id"`
	Timestamp string `json:"timestamp"`
}

// SetWebhookIDs sets the klaviyo_account_id and klaviyo_webhook_id (also the
// Klaviyo-Webhook-Id header) of the webhooks the simulator sends.
func (s *Server) SetWebhookIDs(accountID, webhookID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hookAccount, s.hookID = accountID, webhookID
}

// SetWebhookTarget sets where Text sends its webhooks, and the secret it signs them with
// (the connection's Klaviyo webhook secret), besides the webhooks made through the Webhooks
// API (admin.go).
func (s *Server) SetWebhookTarget(url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hookURL, s.hookSecret = url, secret
}

// WebhookRequest builds the POST that delivers items to url as one system webhook, signed
// with secret and stamped with the server's clock (SetClock makes a stale one). It is the
// one place the envelope is made: SendWebhook sends what it builds, and a test may change
// a header or the body before sending it itself (sign again with Sign).
func (s *Server) WebhookRequest(url, secret string, items ...WebhookItem) (*http.Request, error) {
	s.mu.Lock()
	id := s.hookID
	s.mu.Unlock()
	return s.webhookRequest(url, secret, id, items...)
}

// webhookRequest is WebhookRequest for the webhook of id: SetWebhookIDs's, or one made
// through the Webhooks API.
func (s *Server) webhookRequest(url, secret, id string, items ...WebhookItem) (*http.Request, error) {
	s.mu.Lock()
	now, account := s.now().UTC(), s.hookAccount
	s.mu.Unlock()
	if items == nil {
		items = []WebhookItem{}
	}
	body, err := json.Marshal(struct {
		Data []WebhookItem `json:"data"`
		Meta webhookMeta   `json:"meta"`
	}{items, webhookMeta{AccountID: account, WebhookID: id, Timestamp: now.Format(time.RFC3339)}})
	if err != nil {
		return nil, fmt.Errorf("encode webhook: %w", err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build webhook request: %w", err)
	}
	ts := now.Format(http.TimeFormat) // IMF-fixdate, as "Thu, 04 Jan 2024 18:05:25 GMT"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(klaviyo.HeaderWebhookID, id)
	req.Header.Set(klaviyo.HeaderTimestamp, ts)
	req.Header.Set(klaviyo.HeaderSignature, klaviyo.Sign(secret, ts, body))
	return req, nil
}

// SendWebhook delivers items to url as one signed system webhook and returns the receiver's
// answer, whose body the caller closes.
func (s *Server) SendWebhook(url, secret string, items ...WebhookItem) (*http.Response, error) {
	req, err := s.WebhookRequest(url, secret, items...)
	if err != nil {
		return nil, err
	}
	return s.hookClient.Do(req)
}

// Media is an image or video of an MMS.
type Media struct {
	ContentType string `json:"content_type"`
	URL         string `json:"url"`
}

// InboundSMS is a text a customer sent the brand.
type InboundSMS struct {
	EventID        string // the event's id, the item's external_id; a new one when empty
	MessageID      string // a new one when empty
	ConversationID string
	ProfileID      string
	From           string // the customer's number
	To             string // the brand's number
	Body           string
	SenderType     string // the brand number's kind; long_code when empty
	Media          []Media
	Time           time.Time // the server's clock when zero
}

// InboundSMSItem is the webhook item of topic zenklav.TopicInboundSMS for m.
func (s *Server) InboundSMSItem(m InboundSMS) WebhookItem {
	media := m.Media
	if media == nil {
		media = []Media{}
	}
	props := map[string]any{
		"message_id":        cmp.Or(m.MessageID, newEventID()),
		"conversation_id":   m.ConversationID,
		"from_phone_number": m.From,
		"to_phone_number":   m.To,
		"body":              m.Body,
		"sender_type":       cmp.Or(m.SenderType, zenklav.SenderLongCode),
		"media":             media,
	}
	return s.eventItem(zenklav.TopicInboundSMS, m.EventID, m.ProfileID, m.Time, props)
}

// SentSMS is a campaign or flow text the brand sent a customer.
type SentSMS struct {
	EventID      string // the item's external_id; a new one when empty
	ProfileID    string
	From         string // the brand's number
	To           string // the customer's number
	Body         string
	CampaignName string // one of the two, or neither
	FlowName     string
	Time         time.Time // the server's clock when zero
}

// SentSMSItem is the webhook item of topic zenklav.TopicSentSMS for m.
func (s *Server) SentSMSItem(m SentSMS) WebhookItem {
	return s.eventItem(zenklav.TopicSentSMS, m.EventID, m.ProfileID, m.Time, sentProperties(m))
}

// FailedToDeliverSMSItem is the webhook item of topic zenklav.TopicFailedToDeliverSMS for a
// text that did not reach the customer.
func (s *Server) FailedToDeliverSMSItem(m SentSMS) WebhookItem {
	return s.eventItem(zenklav.TopicFailedToDeliverSMS, m.EventID, m.ProfileID, m.Time, sentProperties(m))
}

// sentProperties are the event properties of a sent (or undelivered) text: the names
// zenklav reads, only those that have a value, as Klaviyo leaves out what it does not know.
func sentProperties(m SentSMS) map[string]any {
	props := map[string]any{}
	for k, v := range map[string]string{
		"body": m.Body, "from_phone_number": m.From, "to_phone_number": m.To,
		"campaign_name": m.CampaignName, "flow_name": m.FlowName,
	} {
		if v != "" {
			props[k] = v
		}
	}
	return props
}

// eventItem is a webhook item whose payload is an event of the profile, shaped as Get Event
// answers it (EventResponseObjectResource), with its metric named after the topic.
func (s *Server) eventItem(topic, eventID, profileID string, at time.Time, props map[string]any) WebhookItem {
	if at.IsZero() {
		s.mu.Lock()
		at = s.now()
		s.mu.Unlock()
	}
	eventID = cmp.Or(eventID, newEventID())
	metric := "M" + strings.ToUpper(strings.TrimPrefix(topic, "event:klaviyo."))
	rel := map[string]any{"metric": map[string]any{"data": map[string]any{"type": "metric", "id": metric}}}
	if profileID != "" {
		rel["profile"] = map[string]any{"data": map[string]any{"type": "profile", "id": profileID}}
	}
	payload, err := json.Marshal(map[string]any{
		"type": "event",
		"id":   eventID,
		"attributes": map[string]any{
			"timestamp":        at.Unix(),
			"event_properties": props,
			"datetime":         at.UTC().Format(time.RFC3339),
			"uuid":             newID(),
		},
		"relationships": rel,
	})
	if err != nil {
		panic("klaviyotest: encode event payload: " + err.Error()) // maps of strings always encode
	}
	return WebhookItem{ExternalID: eventID, Topic: topic, Payload: payload}
}

// base62 is the alphabet of Klaviyo's event ids ("4L3cwQae2TX").
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newEventID returns a random id shaped like a Klaviyo event id.
func newEventID() string {
	var b [11]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = base62[int(b[i])%len(base62)]
	}
	return string(b[:])
}

// Phone configures Text, the sandbox's phone.
type Phone struct {
	// Account is the private key of the account the phone texts; the only account when empty.
	Account string
	// AutoSubscribe makes a number no profile has a subscribed profile on its first text, as
	// if the customer had joined before; without it the profile is never subscribed, and
	// zenklav leaves its texts alone.
	AutoSubscribe bool
}

// SetPhone configures Text.
func (s *Server) SetPhone(p Phone) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phone = p
}

// optIn are the keywords with which Klaviyo subscribes a customer again; the opt-out
// keywords (STOP, …) are the domain's (zenklav.SMSKeywords.Classify).
var optIn = []string{"START", "UNSTOP"}

// Text plays a customer's phone: fromPhone (E.164) texts body to the account's number
// (SetPhone, SetSMS). The text joins the customer's conversation, made with the profile on
// the first text; STOP and its synonyms unsubscribe the profile and START subscribes it
// again, as Klaviyo does. The inbound-SMS webhook goes to the target of SetWebhookTarget and
// to the account's enabled webhooks of topic zenklav.TopicInboundSMS made through the
// Webhooks API; Text returns its item, and an error when there is no target or one did not
// answer 2xx (the text stays in the conversation, as a text Klaviyo received would).
func (s *Server) Text(fromPhone, body string) (WebhookItem, error) {
	m, targets, err := s.receiveText(fromPhone, body)
	if err != nil {
		return WebhookItem{}, err
	}
	item := s.InboundSMSItem(m)
	if len(targets) == 0 {
		return item, errors.New("text: no webhook target (SetWebhookTarget, or a webhook of topic " + zenklav.TopicInboundSMS + " made through the Webhooks API)")
	}
	if _, err := s.deliver(targets, []WebhookItem{item}); err != nil {
		return item, fmt.Errorf("text: %w", err)
	}
	return item, nil
}

// receiveText keeps a customer's text in the phone's account and returns the inbound message
// to announce, and where to.
func (s *Server) receiveText(fromPhone, body string) (m InboundSMS, targets []hookTarget, err error) {
	if !zenklav.IsE164(fromPhone) {
		return m, nil, fmt.Errorf("text: %q is not an E.164 phone number", fromPhone)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.phoneAccount()
	if err != nil {
		return m, nil, err
	}
	now := s.now()
	p := a.byPhone(fromPhone)
	if p == nil {
		p = a.profileFor(klaviyo.Profile{PhoneNumber: fromPhone}, now)
		consent := NeverSubscribed
		if s.phone.AutoSubscribe {
			consent = Subscribed
		}
		p.setSMSConsent(consent, "TEXT", now)
	}
	_, stop := zenklav.SMSKeywords{}.Classify(body)
	switch word := strings.ToUpper(strings.TrimFunc(body, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsPunct(r) })); {
	case stop:
		p.setSMSConsent(Unsubscribed, "TEXT", now)
	case slices.Contains(optIn, word):
		p.setSMSConsent(Subscribed, "TEXT", now)
	}
	cv := a.conversationOf(p)
	cv.messages = append(cv.messages, Message{Inbound: true, Body: body, Time: now})
	m = InboundSMS{ConversationID: cv.id, ProfileID: p.id, From: fromPhone, To: cmp.Or(a.sms.Number, DefaultSMSNumber),
		Body: body, SenderType: a.sms.SenderType, Time: now}
	if s.hookURL != "" {
		targets = append(targets, hookTarget{url: s.hookURL, secret: s.hookSecret, id: s.hookID})
	}
	return m, append(targets, a.webhookTargets(zenklav.TopicInboundSMS)...), nil
}

// phoneAccount is the account Text texts. The caller holds s.mu.
func (s *Server) phoneAccount() (*account, error) {
	if s.phone.Account != "" {
		a := s.accounts[s.phone.Account]
		if a == nil {
			return nil, errors.New("text: no account has the phone's private key (SetPhone)")
		}
		return a, nil
	}
	if len(s.accounts) != 1 {
		return nil, fmt.Errorf("text: %d accounts, and SetPhone names none", len(s.accounts))
	}
	for _, a := range s.accounts {
		return a, nil
	}
	panic("not reached: there is one account")
}
