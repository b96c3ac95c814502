package zenklav

import "log/slog"

// Secret is a string that never prints: not in logs, not in errors, not in JSON.
type Secret string

// Reveal returns the secret itself, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string { return redacted(s) }

// GoString keeps %#v from printing the secret too.
func (s Secret) GoString() string { return redacted(s) }

// LogValue keeps slog from printing the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted(s)) }

// MarshalText keeps encoders from writing the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted(s)), nil }

// UnmarshalText reads the secret from a config file.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

func redacted(s Secret) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}
