// Package golden compares what a test produces with a file in testdata, and rewrites the
// file when the test runs with -update (to be reviewed in the diff before committing).
package golden

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files from what the tests produce")

// Check fails the test unless got equals the file at path; with -update it writes got there
// first.
func Check(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it after review):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
