package kafka

// FrozenAddr is frozenAddr, for the tests of package kafka_test.
var FrozenAddr = frozenAddr
