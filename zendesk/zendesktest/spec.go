package zendesktest

import (
	"context"
	_ "embed"
	"fmt"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// oasYAML is Zendesk's official Support API OpenAPI document, copied verbatim from
// shared/contracts/zendesk/oas.yaml (a test keeps the two identical): go:embed cannot reach
// outside the module.
//
//go:embed oas.yaml
var oasYAML []byte

// spec is the parsed document and its router, shared by every Server in the process:
// parsing 1.2 MB of YAML takes a noticeable fraction of a second.
var spec struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

func loadSpec() (*openapi3.T, routers.Router, error) {
	spec.once.Do(func() {
		spec.doc, spec.router, spec.err = parseSpec()
	})
	return spec.doc, spec.router, spec.err
}

func parseSpec() (*openapi3.T, routers.Router, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(oasYAML)
	if err != nil {
		return nil, nil, fmt.Errorf("load zendesk openapi spec: %w", err)
	}
	// The spec's only server is https://{subdomain}.{domain}.com, which the router turns
	// into a host and scheme match; the simulator answers on a loopback address, so routes
	// match on path and method alone, as they do on any real account's host.
	doc.Servers = nil

	// The whole document does not pass doc.Validate (ConversationLogObject has an array
	// without items, ListBrandAgents declares path parameters its path lacks, and some
	// official examples set readOnly fields), so instead every operation the simulator
	// serves must be well-formed, examples included: what it validates against is sound.
	ctx := context.Background()
	for id := range handlers {
		op := operation(doc, id)
		if op == nil {
			return nil, nil, fmt.Errorf("load zendesk openapi spec: operation %s is missing", id)
		}
		if err := op.Validate(ctx); err != nil {
			return nil, nil, fmt.Errorf("load zendesk openapi spec: operation %s: %w", id, err)
		}
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("build zendesk openapi router: %w", err)
	}
	return doc, router, nil
}

// operation returns the operation with the given operationId, or nil.
func operation(doc *openapi3.T, id string) *openapi3.Operation {
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.OperationID == id {
				return op
			}
		}
	}
	return nil
}
