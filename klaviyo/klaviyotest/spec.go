package klaviyotest

import (
	"context"
	_ "embed"
	"fmt"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// stableJSON is Klaviyo's OpenAPI document for revision 2026-07-15, copied verbatim from
// shared/contracts/klaviyo/stable.json (a test keeps the two identical): go:embed cannot
// reach outside the module.
//
//go:embed stable.json
var stableJSON []byte

// spec is the parsed document and its router, shared by every Server in the process:
// parsing 3 MB of JSON takes a noticeable fraction of a second.
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
	doc, err := loader.LoadFromData(stableJSON)
	if err != nil {
		return nil, nil, fmt.Errorf("load klaviyo openapi spec: %w", err)
	}
	// The spec's only server is https://a.klaviyo.com, which the router turns into a host
	// and scheme match; the simulator answers on a loopback address, so routes match on
	// path and method alone.
	doc.Servers = nil

	// Every operation the simulator serves must be well-formed, so what it validates
	// against is sound.
	ctx := context.Background()
	for id := range handlers {
		op := operation(doc, id)
		if op == nil {
			return nil, nil, fmt.Errorf("load klaviyo openapi spec: operation %s is missing", id)
		}
		if err := op.Validate(ctx); err != nil {
			return nil, nil, fmt.Errorf("load klaviyo openapi spec: operation %s: %w", id, err)
		}
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("build klaviyo openapi router: %w", err)
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
