package store

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"testing"
)

// No two migrations share a number: the second would be skipped as
// already applied wherever the other one ran.
func TestMigrationNumbersAreUnique(t *testing.T) {
	names, err := fs.Glob(schemaFS, "schema/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	last := 0
	for _, name := range names {
		var v int
		if _, err := fmt.Sscanf(filepath.Base(name), "%04d_", &v); err != nil || v <= last {
			t.Fatalf("migration %s: number %d after %d", name, v, last)
		}
		last = v
	}
}
