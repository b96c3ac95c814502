package klaviyotest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
)

// SMS conversations, as far as Klaviyo's public API shows them: profiles found by phone with
// their SMS consent, one SMS conversation per profile (get_conversations_for_profile), and
// replies sent into it (create_conversation_message), which the simulator keeps so tests can
// read what the customer received. Klaviyo documents no error for a refused reply; the
// simulator's answers are its own assumption:
//
//   - the account has the Conversations API disabled (SetSMS): 403 permission_denied;
//   - the message body is empty or blank: 400 invalid, at /data/attributes/body;
//   - no conversation of the account has the id: 404 not_found;
//   - the conversation's profile cannot receive SMS (its SMS marketing consent is not
//     SUBSCRIBED): 400 invalid, at /data/relationships/conversation/data/id.

// Consent states of a profile's SMS marketing consent.
const (
	Subscribed      = "SUBSCRIBED"
	Unsubscribed    = "UNSUBSCRIBED"
	NeverSubscribed = "NEVER_SUBSCRIBED"
)

// DefaultSMSNumber is an account's sending number when SetSMS gives none.
const DefaultSMSNumber = "+15005550000"

// SMSSettings are an account's SMS settings.
type SMSSettings struct {
	// Number is the account's sending number (E.164), the to_phone_number of the texts its
	// customers send; DefaultSMSNumber when empty.
	Number string
	// SenderType is the number's kind (zenklav.SenderLongCode, …); long_code when empty.
	SenderType string
	// ConversationsDisabled refuses create_conversation_message with 403, as for an account
	// Klaviyo has not enabled for the Conversations API. A new account has it enabled, which
	// keeps tests short.
	ConversationsDisabled bool
}

// SetSMS sets the SMS settings of the account of privateKey. It panics if no account has
// privateKey: a mistake in the test.
func (s *Server) SetSMS(privateKey string, st SMSSettings) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.mustAccount(privateKey, "SetSMS")
	a.sms = st
}

// SMSProfile is a customer who texts: a profile with a phone number, its SMS consent and an
// SMS conversation.
type SMSProfile struct {
	Phone               string // E.164; required
	Email               string // optional
	FirstName, LastName string // optional; empty keeps what the profile has
	// Consent is the SMS marketing consent: Subscribed, Unsubscribed or NeverSubscribed;
	// Subscribed when empty. Only a subscribed profile can receive replies.
	Consent string
}

// SetSMSProfile makes the profile with p.Phone, or updates it, with p's consent, email and
// names, gives it an SMS conversation if it has none, and returns the ids of both. It panics
// if no account has privateKey or p.Phone is not E.164: mistakes in the test. A later
// SetProfileDetails of the profile replaces its SMS consent too, with the one it gives.
func (s *Server) SetSMSProfile(privateKey string, p SMSProfile) (profileID, conversationID string) {
	if !zenklav.IsE164(p.Phone) {
		panic(fmt.Sprintf("klaviyotest: SetSMSProfile: phone %q is not E.164", p.Phone))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.mustAccount(privateKey, "SetSMSProfile")
	now := s.now()
	prof := a.byPhone(p.Phone)
	if prof == nil {
		prof = a.profileFor(klaviyo.Profile{Email: p.Email, PhoneNumber: p.Phone}, now)
	} else if prof.ident.Email == "" && p.Email != "" {
		prof.ident.Email = p.Email
	}
	if p.FirstName != "" {
		prof.details.FirstName = p.FirstName
	}
	if p.LastName != "" {
		prof.details.LastName = p.LastName
	}
	prof.setSMSConsent(cmp.Or(p.Consent, Subscribed), "API", now)
	return prof.id, a.conversationOf(prof).id
}

// ConversationID returns the id of the SMS conversation of the profile with phone in the
// account of privateKey.
func (s *Server) ConversationID(privateKey, phone string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[privateKey]
	if a == nil {
		return "", false
	}
	p := a.byPhone(phone)
	if p == nil || p.conversation == nil {
		return "", false
	}
	return p.conversation.id, true
}

// Message is one text of a conversation.
type Message struct {
	Inbound bool // the customer texted it; else a reply sent through the API
	Body    string
	Time    time.Time
}

// Messages returns the texts of the conversation with the given id, in both directions,
// oldest first; nil for an unknown id.
func (s *Server) Messages(conversationID string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.accounts {
		if c := a.conversations[conversationID]; c != nil {
			return slices.Clone(c.messages)
		}
	}
	return nil
}

// ConversationMessages returns the bodies of the replies create_conversation_message
// accepted into the conversation with the given id, oldest first: what the customer got.
func (s *Server) ConversationMessages(conversationID string) []string {
	var out []string
	for _, m := range s.Messages(conversationID) {
		if !m.Inbound {
			out = append(out, m.Body)
		}
	}
	return out
}

// conversation is a profile's SMS conversation.
type conversation struct {
	id       string
	profile  *profile
	messages []Message
}

// mustAccount is the account of privateKey; it panics, naming the test's call, when there
// is none. The caller holds s.mu.
func (s *Server) mustAccount(privateKey, caller string) *account {
	a, ok := s.accounts[privateKey]
	if !ok {
		panic("klaviyotest: " + caller + ": no account has this private key")
	}
	return a
}

// byPhone is the profile whose phone number is phone, or nil. The caller holds s.mu.
func (a *account) byPhone(phone string) *profile {
	for _, p := range a.profiles {
		if p.ident.PhoneNumber == phone {
			return p
		}
	}
	return nil
}

// conversationOf is p's SMS conversation, made if it has none. The caller holds s.mu.
func (a *account) conversationOf(p *profile) *conversation {
	if p.conversation == nil {
		p.conversation = &conversation{id: newProfileID(), profile: p}
		a.conversations[p.conversation.id] = p.conversation
	}
	return p.conversation
}

// setSMSConsent records an SMS marketing consent, which Klaviyo lets receive texts only when
// subscribed. The caller holds s.mu.
func (p *profile) setSMSConsent(consent, method string, now time.Time) {
	p.details.SMSConsent = &klaviyo.Consent{Consent: consent, CanReceive: consent == Subscribed, Timestamp: now, Method: method}
	p.updated = now
}

// canText says whether replies may go to p.
func (p *profile) canText() bool {
	return p.details.SMSConsent != nil && p.details.SMSConsent.CanReceive
}

// getConversationsForProfile answers GET /api/profiles/{id}/conversations: the profile's SMS
// conversation, or none; 404 for an unknown profile.
func (s *Server) getConversationsForProfile(c *call) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := c.params["id"]
	p := c.account.byID[id]
	if p == nil {
		return answer{status: http.StatusNotFound, errors: []apiError{{Code: "not_found", Title: "Not found.", Detail: fmt.Sprintf("A profile with id %s does not exist.", id)}}}
	}
	data := []any{}
	if cv := p.conversation; cv != nil {
		profileURL := c.base + "/api/profiles/" + p.id + "/"
		data = append(data, map[string]any{
			"type":       "conversation",
			"id":         cv.id,
			"attributes": map[string]any{"channel": klaviyo.ChannelSMS},
			"relationships": map[string]any{"profile": map[string]any{
				"data":  map[string]any{"type": "profile", "id": p.id},
				"links": map[string]any{"self": c.base + "/api/conversations/" + cv.id + "/relationships/profile/", "related": profileURL},
			}},
			"links": map[string]any{"self": c.base + "/api/conversations/" + cv.id + "/"},
		})
	}
	return answer{status: http.StatusOK, body: map[string]any{
		"data":  data,
		"links": map[string]any{"self": c.base + "/api/profiles/" + id + "/conversations"},
	}}
}

// messageBody is the part of ConversationMessageCreateQuery the simulator reads.
type messageBody struct {
	Data struct {
		Attributes struct {
			Body string `json:"body"`
		} `json:"attributes"`
		Relationships struct {
			Conversation struct {
				Data struct {
					ID string `json:"id"`
				} `json:"data"`
			} `json:"conversation"`
		} `json:"relationships"`
	} `json:"data"`
}

// createConversationMessage answers POST /api/conversation-messages: 202 with no body, and
// the reply kept in its conversation; or one of the refusals above.
func (s *Server) createConversationMessage(c *call) answer {
	var body messageBody
	if err := json.Unmarshal(c.body, &body); err != nil {
		return answer{status: http.StatusBadRequest, errors: []apiError{invalid("decode body: "+err.Error(), "/data")}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := c.account
	if a.sms.ConversationsDisabled {
		return answer{status: http.StatusForbidden, errors: []apiError{{Code: "permission_denied", Title: "You do not have permission to perform this action.",
			Detail: "The Conversations API is not enabled for this account."}}}
	}
	text := body.Data.Attributes.Body
	if strings.TrimSpace(text) == "" {
		return answer{status: http.StatusBadRequest, errors: []apiError{invalid("The message body must not be empty.", "/data/attributes/body")}}
	}
	id := body.Data.Relationships.Conversation.Data.ID
	cv := a.conversations[id]
	if cv == nil {
		return answer{status: http.StatusNotFound, errors: []apiError{{Code: "not_found", Title: "Not found.", Detail: fmt.Sprintf("A conversation with id %s does not exist.", id)}}}
	}
	if !cv.profile.canText() {
		consent := NeverSubscribed
		if sc := cv.profile.details.SMSConsent; sc != nil {
			consent = sc.Consent
		}
		return answer{status: http.StatusBadRequest, errors: []apiError{invalid(
			fmt.Sprintf("The profile of this conversation cannot receive SMS: its SMS consent is %s.", consent),
			"/data/relationships/conversation/data/id")}}
	}
	cv.messages = append(cv.messages, Message{Body: text, Time: s.now()})
	return answer{status: http.StatusAccepted}
}
