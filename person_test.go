package zenklav_test

import (
	"testing"

	"github.com/zenklav/zenklav"
)

func TestProfileOf(t *testing.T) {
	tests := []struct {
		in           zenklav.Person
		email, phone string
		fails        bool
	}{
		{zenklav.Person{Email: "a@example.com", Phone: "+15555550101"}, "a@example.com", "", false},
		{zenklav.Person{Phone: "+1 (555) 555-0142"}, "", "+15555550142", false},
		{zenklav.Person{Phone: "0044 20 7946 0958"}, "", "+442079460958", false},
		{zenklav.Person{Phone: "555-0142"}, "", "", true}, // no country code: not guessed
		{zenklav.Person{Name: "Nobody"}, "", "", true},
	}
	for _, tt := range tests {
		key, err := zenklav.ProfileOf(tt.in)
		if (err != nil) != tt.fails || key.Email != tt.email || key.PhoneNumber != tt.phone {
			t.Errorf("ProfileOf(%+v) = %q, %q, %v", tt.in, key.Email, key.PhoneNumber, err)
		}
		if err != nil && zenklav.ErrorCode(err) != zenklav.EINVALID {
			t.Errorf("ProfileOf(%+v): error kind %s, want EINVALID (a dead letter, not a retry)", tt.in, zenklav.ErrorCode(err))
		}
	}
}
