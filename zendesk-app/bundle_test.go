package zendeskapp

import (
	"bytes"
	"testing"

	"github.com/zenklav/zenklav/internal/npmtest"
)

// TestZAFSDKBundle: the SDK the sidebar loads is provably zendesk_app_framework_sdk from npm,
// pinned by package-lock.json, and sets the global sidebar.js calls.
func TestZAFSDKBundle(t *testing.T) {
	committed := npmtest.CheckBundle(t, "web/zaf_sdk.js")
	if !bytes.Contains(committed, []byte("window.ZAFClient=")) {
		t.Error("web/zaf_sdk.js does not set window.ZAFClient")
	}
}
