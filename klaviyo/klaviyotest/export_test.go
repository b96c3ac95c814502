package klaviyotest

// EmbeddedSpec is the OpenAPI document as compiled into the package, for the test that
// keeps it identical to the shared contract.
var EmbeddedSpec = stableJSON
