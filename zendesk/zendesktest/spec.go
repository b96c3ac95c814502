package zendesktest

import (
	_ "embed"
	"maps"
	"slices"
	"sync"

	"github.com/zenklav/zenklav/internal/apispec"
)

// oasYAML is Zendesk's official Support API OpenAPI document, copied verbatim from
// shared/contracts/zendesk/oas.yaml (a test keeps the two identical): go:embed cannot reach
// outside the module.
//
//go:embed oas.yaml
var oasYAML []byte

// spec is the parsed document and its router, shared by every Server in the process:
// parsing it takes a noticeable fraction of a second. Only the operations the simulator
// serves are validated at load (see apispec.Load).
// Zendesk's document fails whole-document validation through ConversationLogObject has an array without items, ListBrandAgents declares path parameters its path lacks, and some official examples set readOnly fields.
var spec = sync.OnceValues(func() (*apispec.Spec, error) {
	return apispec.Load("Zendesk", oasYAML, slices.Collect(maps.Keys(handlers)))
})
