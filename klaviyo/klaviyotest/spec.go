package klaviyotest

import (
	_ "embed"
	"maps"
	"slices"
	"sync"

	"github.com/zenklav/zenklav/internal/apispec"
)

// stableJSON is Klaviyo's OpenAPI document for revision 2026-07-15, copied verbatim from
// shared/contracts/klaviyo/stable.json (a test keeps the two identical): go:embed cannot
// reach outside the module.
//
//go:embed stable.json
var stableJSON []byte

// spec is the parsed document and its router, shared by every Server in the process:
// parsing it takes a noticeable fraction of a second. Only the operations the simulator
// serves are validated at load (see apispec.Load).
var spec = sync.OnceValues(func() (*apispec.Spec, error) {
	return apispec.Load("Klaviyo", stableJSON, slices.Collect(maps.Keys(handlers)))
})
