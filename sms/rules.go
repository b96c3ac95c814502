package sms

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/zenklav/zenklav"
)

// The guide's rules for an inbound text, as pure functions of what zenklav knows: the texts,
// the customer's consent, and the state of their current SMS ticket. handle.go carries out
// what they decide.

// text is one inbound message as the rules read it.
type text struct {
	EventID    string
	Body       string
	SenderType string
	Media      []string // content types of the media it carried
}

// admitted sorts a conversation's new texts into those that make or extend a ticket and those
// that do not (skipped: the metric result of each, by event id), and says whether one of them
// was an opt-out (STOP and its synonyms), which the agent is told of on an open ticket.
func admitted(texts []text, kw zenklav.SMSKeywords, consented bool) (keep []text, skipped map[string]string, optOut bool) {
	skipped = map[string]string{}
	for _, t := range texts {
		action, stop := kw.Classify(t.Body)
		optOut = optOut || stop
		switch {
		case !zenklav.CanReceive(t.SenderType):
			skipped[t.EventID] = "cannot_receive" // an alphanumeric sender: no conversation
		case action == zenklav.IgnoredKeyword:
			skipped[t.EventID] = "ignored_keyword" // Klaviyo answers it itself
		case !consented:
			skipped[t.EventID] = "not_consented"
		default:
			keep = append(keep, t)
		}
	}
	return keep, skipped, optOut
}

// commentBody is what the ticket shows of texts that arrived together: each on its own
// paragraph, in order, so a burst becomes one update (Zendesk allows 30 per ticket in 10
// minutes); media are named, never attached, as MMS cannot be shown.
func commentBody(texts []text) string {
	parts := make([]string, 0, len(texts))
	for _, t := range texts {
		body := strings.TrimSpace(t.Body)
		if len(t.Media) > 0 {
			line := fmt.Sprintf("[The customer also sent %s (%s), which zenklav left out: images and other media are not shown in Zendesk.]",
				plural(len(t.Media), "an attachment", "attachments"), strings.Join(t.Media, ", "))
			body = strings.TrimSpace(body + "\n" + line)
		}
		if body != "" {
			parts = append(parts, body)
		}
	}
	return strings.Join(parts, "\n\n")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// action is where the next texts go.
type action int

const (
	createTicket action = iota // no current ticket (or it was deleted)
	followUp                   // the current ticket is closed: a new one follows it up
	addComment                 // new, open, pending, hold
	reopen                     // solved: reopened, and the comment added
)

func (a action) String() string {
	return [...]string{"create", "follow-up", "comment", "reopen"}[a]
}

// route says where texts go given the current ticket; nil when there is none (or Zendesk no
// longer has it).
func route(current *zenklav.DeskTicket) action {
	switch {
	case current == nil:
		return createTicket
	case current.Status == zenklav.StatusClosed:
		return followUp
	case current.Status == zenklav.StatusSolved:
		return reopen
	}
	return addComment
}

// subject is a new ticket's subject: the first words of the customer's first text, cut at
// a word boundary; "SMS from PHONE" when the text has no words.
func subject(body, phone string) string {
	const most = 60
	words := strings.FieldsFunc(body, unicode.IsSpace)
	var s strings.Builder
	for _, w := range words {
		if s.Len()+len(w)+1 > most {
			s.WriteString("…")
			break
		}
		if s.Len() > 0 {
			s.WriteByte(' ')
		}
		s.WriteString(w)
	}
	if s.Len() == 0 {
		return "SMS from " + phone
	}
	return "SMS: " + s.String()
}

// open says whether a ticket still takes comments without a follow-up.
func open(t *zenklav.DeskTicket) bool {
	return t != nil && t.Status != zenklav.StatusClosed && t.Status != zenklav.StatusSolved
}

// tags of a ticket zenklav opens.
func tags() []string { return slices.Clone([]string{zenklav.TagSMS}) }
