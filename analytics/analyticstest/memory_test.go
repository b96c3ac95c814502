package analyticstest_test

import (
	"testing"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics/analyticstest"
)

func TestMemoryConformance(t *testing.T) {
	analyticstest.Conformance(t, func(*testing.T) zenklav.TicketStore { return analyticstest.NewMemory() })
}
