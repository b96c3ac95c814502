package zenklav

import (
	"context"
	"strings"
	"time"
	"unicode"
)

// Two-way SMS: a consented Klaviyo SMS subscriber texts the brand, zenklav turns the text into a
// Zendesk ticket or comment, and an agent's public reply goes back through Klaviyo's
// Conversations API. This file holds the domain's words for it; the sms role applies them.

// The Klaviyo system-webhook topics zenklav reads. TopicInboundSMS is zenklav's assumption:
// Klaviyo gives the inbound-message topic of its Conversations API to approved partners only
// (docs/sms.md says how to change it); the other two are public.
const (
	TopicInboundSMS         = "event:klaviyo.inbound_sms"
	TopicSentSMS            = "event:klaviyo.sent_sms"
	TopicFailedToDeliverSMS = "event:klaviyo.failed_to_deliver_sms"
)

// Sender types of a Klaviyo SMS number. An alphanumeric sender cannot receive texts.
const (
	SenderLongCode  = "long_code"
	SenderTollFree  = "toll_free"
	SenderShortCode = "short_code"
	SenderAlpha     = "alpha"
)

// CanReceive says whether a number of that sender type can receive texts, and so hold a
// conversation.
func CanReceive(senderType string) bool {
	switch senderType {
	case SenderLongCode, SenderTollFree, SenderShortCode:
		return true
	}
	return false
}

// TagSMS is the tag of every ticket zenklav opens from SMS.
const TagSMS = "sms"

// SMSKeywords are a connection's keyword lists. A text that is a compliance keyword
// (ComplianceKeywords, always) or one of Ignore (subscribe and automation-trigger keywords)
// opens no ticket, unless it is one of Create (HELP, INFO and their translations), which does.
type SMSKeywords struct {
	Ignore []string `json:"ignore,omitempty"`
	Create []string `json:"create,omitempty"`
}

// ComplianceKeywords are the carriers' opt-out and opt-in keywords, which Klaviyo answers
// itself: never a ticket, whatever a connection's lists say.
var ComplianceKeywords = []string{
	"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE",
	"START", "UNSTOP",
}

// DefaultIgnoreKeywords are the usual subscribe keywords, for a connection that names none
// (its automation triggers it adds to its own list).
var DefaultIgnoreKeywords = []string{"JOIN", "YES", "SUBSCRIBE", "OPTIN", "Y"}

// DefaultCreateKeywords are the keywords that do open a ticket: the customer asks for help.
var DefaultCreateKeywords = []string{"HELP", "INFO", "AYUDA"}

// optOutKeywords are the keywords that end the customer's SMS consent: the agent is told.
var optOutKeywords = ComplianceKeywords[:8]

// KeywordAction is what a text's keyword asks of zenklav.
type KeywordAction int

const (
	// NotAKeyword: an ordinary message, handled as such.
	NotAKeyword KeywordAction = iota
	// IgnoredKeyword: opens nothing.
	IgnoredKeyword
	// CreateKeyword: a keyword that opens a ticket (HELP).
	CreateKeyword
)

// Classify says what text is under the connection's keywords: matching ignores case,
// surrounding spaces and punctuation ("stop!" is STOP). optOut is true for a keyword that
// ends SMS consent (STOP and its synonyms), whether or not the lists ignore it.
func (k SMSKeywords) Classify(text string) (action KeywordAction, optOut bool) {
	word := normalizeKeyword(text)
	if word == "" {
		return NotAKeyword, false
	}
	optOut = containsFold(optOutKeywords, word)
	create, ignore := k.Create, k.Ignore
	if create == nil {
		create = DefaultCreateKeywords
	}
	if ignore == nil {
		ignore = DefaultIgnoreKeywords
	}
	switch {
	case containsFold(create, word) && !containsFold(ComplianceKeywords, word):
		return CreateKeyword, optOut
	case containsFold(ComplianceKeywords, word), containsFold(ignore, word):
		return IgnoredKeyword, optOut
	}
	return NotAKeyword, optOut
}

// normalizeKeyword is text without surrounding spaces and punctuation, upper-cased.
func normalizeKeyword(text string) string {
	return strings.ToUpper(strings.TrimFunc(text, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r)
	}))
}

func containsFold(list []string, word string) bool {
	for _, k := range list {
		if normalizeKeyword(k) == word {
			return true
		}
	}
	return false
}

// Desk is one Zendesk account as the sms role uses it (zendesk.Client): end users by phone,
// and the tickets of SMS conversations. Errors: ENOTFOUND for a ticket that does not exist
// (any more), EUNAVAILABLE when worth another try (429 with RetryAfter, 5xx, timeouts),
// anything else final.
type Desk interface {
	// FindEndUserByPhone finds the end user with that E.164 phone; found is false when none.
	FindEndUserByPhone(ctx context.Context, phone string) (u DeskUser, found bool, err error)
	// CreateEndUser creates an end user (name, phone, email when known).
	CreateEndUser(ctx context.Context, u DeskUser) (DeskUser, error)
	// Ticket reads a ticket's status, requester and tags.
	Ticket(ctx context.Context, id int64) (DeskTicket, error)
	// CreateTicket creates a ticket with its first comment; the same idempotencyKey within
	// Zendesk's window returns the ticket the first call created.
	CreateTicket(ctx context.Context, t NewTicket, idempotencyKey string) (DeskTicket, error)
	// Comment adds a comment to a ticket, setting its status too when status is not "".
	Comment(ctx context.Context, ticketID int64, c DeskComment, status string) error
	// HasComment says whether the ticket has a comment with c's body, author and publicity
	// made at or after since (GET /api/v2/tickets/{id}/comments): how the sms role learns,
	// after a crash between its request and its record of it, whether a comment landed.
	HasComment(ctx context.Context, ticketID int64, c DeskComment, since time.Time) (bool, error)
	// CommentAttachments names the files attached to a comment (none when it has none, or
	// is gone): what an SMS reply leaves out.
	CommentAttachments(ctx context.Context, ticketID, commentID int64) ([]string, error)
}

// DeskUser is a Zendesk user as the sms role knows one.
type DeskUser struct {
	ID    int64
	Name  string
	Email string
	Phone string // E.164
}

// DeskTicket is a ticket's state as the sms role needs it.
type DeskTicket struct {
	ID          int64
	Status      string // new, open, pending, hold, solved, closed
	RequesterID int64
	BrandID     int64
	Tags        []string
}

// NewTicket is a ticket the sms role opens.
type NewTicket struct {
	RequesterID int64
	BrandID     int64 // 0: the account's default brand
	Subject     string
	Tags        []string
	Comment     DeskComment
	// Notes are internal notes added right after the first comment (what the customer is
	// answering).
	Notes []string
	// FollowUpOf is the closed ticket this one follows up (via_followup_source_id); 0 for none.
	FollowUpOf int64
}

// DeskComment is a comment zenklav writes: the customer's text (public, by the requester), or
// an internal note for the agent.
type DeskComment struct {
	Body     string
	Public   bool
	AuthorID int64 // 0: the API user
}

// Conversations is one Klaviyo account's SMS conversations (klaviyo.Client). Calls wait for the
// account's rate limits of these endpoints first. Errors as Klaviyo's.
type Conversations interface {
	// ProfileByPhone finds the profile with that E.164 phone and its SMS consent; found is
	// false when none.
	ProfileByPhone(ctx context.Context, phone string) (p Profile, found bool, err error)
	// SMSConversation is the id of the profile's SMS conversation; ENOTFOUND when it has none.
	SMSConversation(ctx context.Context, profileID string) (string, error)
	// SendMessage sends body into the conversation; Klaviyo answers 202 without a message id.
	SendMessage(ctx context.Context, conversationID, body string) error
	// MessageDelay is how long a SendMessage would wait for the account's limit now.
	MessageDelay() time.Duration
}
