package zenklav

import "testing"

func TestKeywordsClassify(t *testing.T) {
	custom := SMSKeywords{Ignore: []string{"PROMO"}, Create: []string{"HELP", "SOCORRO"}}
	for _, c := range []struct {
		kw     SMSKeywords
		text   string
		action KeywordAction
		optOut bool
	}{
		{SMSKeywords{}, "Where is my order?", NotAKeyword, false},
		{SMSKeywords{}, "STOP", IgnoredKeyword, true},
		{SMSKeywords{}, "  stop! ", IgnoredKeyword, true},
		{SMSKeywords{}, "Unsubscribe.", IgnoredKeyword, true},
		{SMSKeywords{}, "join", IgnoredKeyword, false},
		{SMSKeywords{}, "YES", IgnoredKeyword, false},
		{SMSKeywords{}, "help", CreateKeyword, false},
		{SMSKeywords{}, "Info?", CreateKeyword, false},
		{SMSKeywords{}, "ayuda", CreateKeyword, false},
		{SMSKeywords{}, "stop sending me these", NotAKeyword, false},
		{SMSKeywords{}, "", NotAKeyword, false},
		{SMSKeywords{}, "?!", NotAKeyword, false},
		{custom, "promo", IgnoredKeyword, false},
		{custom, "socorro", CreateKeyword, false},
		{custom, "ayuda", NotAKeyword, false},
		{custom, "join", NotAKeyword, false},   // a connection's ignore list replaces the default subscribe keywords
		{custom, "STOP", IgnoredKeyword, true}, // never the compliance keywords
		{SMSKeywords{Create: []string{"STOP"}}, "stop", IgnoredKeyword, true},
		{SMSKeywords{}, "start", IgnoredKeyword, false},
	} {
		action, optOut := c.kw.Classify(c.text)
		if action != c.action || optOut != c.optOut {
			t.Errorf("%+v.Classify(%q) = %v, %v; want %v, %v", c.kw, c.text, action, optOut, c.action, c.optOut)
		}
	}
	for _, s := range []string{SenderLongCode, SenderTollFree, SenderShortCode} {
		if !CanReceive(s) {
			t.Errorf("%s cannot receive", s)
		}
	}
	if CanReceive(SenderAlpha) || CanReceive("") {
		t.Error("an alpha sender or an unknown one can receive")
	}
}
