package klaviyo

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
)

// The SMS side of an account: Klaviyo's Conversations API, as the sms role uses it to send an
// agent's reply. Klaviyo's only public way from a phone number to a conversation is the
// profile with that number and then its conversations; the message goes out from the
// number the customer wrote to, which Klaviyo picks itself.

// The Client is a zenklav.Conversations: the sms role's view of the account.
var _ zenklav.Conversations = (*Client)(nil)

// ChannelSMS is the channel of a conversation held by text message (the others are
// "instagram" and "whatsapp").
const ChannelSMS = "sms"

// ProfileByPhone finds the profile whose phone number is phone (E.164), with its
// subscriptions, so SMSConsent says whether it may be texted (GET /api/profiles with
// filter=equals(phone_number,…)). found is false, with a nil error, when Klaviyo has none. It
// asks for no predictive analytics, which keeps it under get_profiles's higher limit.
func (c *Client) ProfileByPhone(ctx context.Context, phone string) (ProfileRecord, bool, error) {
	const op = "find profile by phone"
	if !zenklav.IsE164(phone) {
		// The message names no number: it is a customer's.
		return ProfileRecord{}, false, zenklav.Errorf(zenklav.EINVALID, "%s: the phone number is not in E.164 form", op)
	}
	return c.findProfile(ctx, op, "GET /api/profiles", "phone_number", phone, "subscriptions")
}

// SMSConversation is the id of the SMS conversation of the profile with the given id
// (GET /api/profiles/{id}/conversations, the item whose channel is sms). It is ENOTFOUND when
// the profile has none, or no longer exists. Klaviyo keeps one conversation per channel
// since revision 2026-07-15, so the first page holds them all.
func (c *Client) SMSConversation(ctx context.Context, profileID string) (string, error) {
	const op = "profile conversations"
	if err := checkID(profileID); err != nil {
		return "", zenklav.Wrap(zenklav.EINVALID, err, "%s", op)
	}
	q := url.Values{}
	q.Set("fields[conversation]", "channel")
	var doc struct {
		Data []struct {
			ID         string `json:"id"`
			Attributes struct {
				Channel string `json:"channel"`
			} `json:"attributes"`
		} `json:"data"`
	}
	path := "/api/profiles/" + profileID + "/conversations"
	if err := c.get(ctx, op, "GET /api/profiles/{id}/conversations", path, q, &doc); err != nil {
		return "", err
	}
	for _, d := range doc.Data {
		if d.Attributes.Channel == ChannelSMS && d.ID != "" {
			return d.ID, nil
		}
	}
	return "", zenklav.Errorf(zenklav.ENOTFOUND, "%s: the profile has no SMS conversation", op)
}

// SendMessage sends body as a text into the conversation with the given id
// (POST /api/conversation-messages). Klaviyo answers 202 and no message id: whether the text
// reached the phone, only its events say. Klaviyo refuses with a 4xx (a final error with the
// answer in zenklav.Response) a conversation that is not the account's, a profile that may not
// be texted and an account without the Conversations API.
func (c *Client) SendMessage(ctx context.Context, conversationID, body string) error {
	const op = "send conversation message"
	if conversationID == "" {
		return zenklav.Errorf(zenklav.EINVALID, "%s: no conversation id", op)
	}
	if strings.TrimSpace(body) == "" {
		return zenklav.Errorf(zenklav.EINVALID, "%s: the message is empty", op)
	}
	if len(body) > MaxStringBytes {
		return zenklav.Errorf(zenklav.ETOOLARGE, "%s: the message is %d bytes; Klaviyo accepts at most %d", op, len(body), MaxStringBytes)
	}
	// ConversationMessageCreateQuery: body alone, no message_hierarchy, makes a plain SMS.
	payload := map[string]any{"data": map[string]any{
		"type":       "conversation-message",
		"attributes": map[string]any{"body": body},
		"relationships": map[string]any{
			"conversation": map[string]any{"data": map[string]any{"type": "conversation", "id": conversationID}},
		},
	}}
	return c.post(ctx, op, "/api/conversation-messages", payload)
}

// MessageDelay is how long a SendMessage would wait for the account's rate limit now,
// behind the messages already waiting: the sms role notes a long one on the ticket.
func (c *Client) MessageDelay() time.Duration {
	return c.buckets["/api/conversation-messages"].delay()
}
