package zendesk

import "testing"

// A ticket opened from SMS (made through the API, tagged sms) has the channel sms; the tag on a
// ticket that came another way changes nothing.
func TestChannelOfSMSTickets(t *testing.T) {
	for _, c := range []struct {
		via  string
		tags []string
		want string
	}{
		{"web_service", []string{"sms"}, "sms"},
		{"api", []string{"vip", "sms"}, "sms"},
		{"web_service", nil, "api"},
		{"email", []string{"sms"}, "email"},
		{"sms", nil, "sms"},
		{"web_form", []string{"sms"}, "web"},
	} {
		if got := channelOf(c.via, c.tags); got != c.want {
			t.Errorf("channelOf(%q, %q) = %q, want %q", c.via, c.tags, got, c.want)
		}
	}
}
