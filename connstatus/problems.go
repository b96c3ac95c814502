package connstatus

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
)

// recent is how fresh an unavailable system's last failure must be to be a problem: retries
// that ended minutes ago were a blip.
const recent = 5 * time.Minute

// problems says what is wrong with the connection, in plain sentences for the admin.
func problems(c *zenklav.Connection, rep *Report, unread []string, lagWarn int64) []string {
	out := []string{}
	switch {
	case !c.HasKlaviyo():
		out = append(out, "The connection has no Klaviyo account: its tickets reach the reports, not Klaviyo. Connect Klaviyo.")
	case !c.HasZendeskAPI():
		out = append(out, "The connection has no Zendesk API access, which the emitter needs to look tickets up: "+
			"its tickets do not reach Klaviyo. Reconnect Zendesk.")
	}
	for _, e := range rep.Errors {
		if p := errorProblem(rep.Connection, e, rep.At); p != "" {
			out = append(out, p)
		}
	}
	if rep.DeadLetters > 0 && rep.At.Sub(rep.LastDeadLetter) < window {
		out = append(out, fmt.Sprintf("Messages of this connection became dead letters in the last hour (the last at %s; %d in the dead-letter topics). "+
			"Once the cause is fixed, `zenklav replay --connection %s` sends them again.", when(rep.LastDeadLetter), rep.DeadLetters, rep.Connection))
	}
	groups := make([]string, 0, len(rep.Lag))
	for g := range rep.Lag {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	for _, g := range groups {
		if n := rep.Lag[g]; n > lagWarn {
			out = append(out, fmt.Sprintf("The consumer group %s is %d messages behind (all connections together).", g, n))
		}
	}
	if len(unread) > 0 {
		out = append(out, "This report is incomplete: zenklav could not read "+strings.Join(unread, ", ")+".")
	}
	return out
}

// errorProblem is the sentence of one kind of error, or "" when the kind needs nobody.
func errorProblem(connection string, e ErrorSummary, now time.Time) string {
	system, kind, _ := strings.Cut(e.Kind, "_")
	name := systemName(system)
	switch kind {
	case Unauthorized:
		return fmt.Sprintf("%s refused the connection's credentials (401/403) %s in the last hour, the last at %s (%s): "+
			"its key or token was revoked or lacks a scope. zenklav does not retry this; %s.", name, times(e.Count), when(e.Last), e.Message, e.Advice)
	case Refused:
		return fmt.Sprintf("%s refused zenklav's requests %s in the last hour, the last at %s (%s): those messages are dead letters; %s.",
			name, times(e.Count), when(e.Last), e.Message, e.Advice)
	case Unavailable:
		if now.Sub(e.Last) >= recent {
			return ""
		}
		return fmt.Sprintf("%s is failing: %s in the last hour, the last at %s (%s). zenklav retries until it answers.",
			name, times(e.Count), when(e.Last), e.Message)
	}
	return ""
}

func when(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func times(n int64) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}
