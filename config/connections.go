package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/zenklav/zenklav"
	"sigs.k8s.io/yaml"
)

// LoadConnections reads and validates a connections file, JSON or YAML (by extension .yaml
// or .yml).
func LoadConnections(path string) (*zenklav.Connections, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read connections file: %w", err)
	}
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
		if data, err = yaml.YAMLToJSON(data); err != nil {
			return nil, fmt.Errorf("connections file %s: %w", path, err)
		}
	}
	c, err := ParseConnections(data)
	if err != nil {
		return nil, fmt.Errorf("connections file %s: %w", path, err)
	}
	return c, nil
}

// ParseConnections decodes and validates a JSON connections document. Unknown keys are errors,
// so a misspelt setting is caught at start rather than silently ignored.
func ParseConnections(data []byte) (*zenklav.Connections, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var doc struct {
		Connections []zenklav.Connection `json:"connections"`
	}
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	return zenklav.NewConnections(doc.Connections...)
}
