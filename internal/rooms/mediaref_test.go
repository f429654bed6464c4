package rooms

import (
	"slices"
	"testing"
)

func TestLocalMediaIDs(t *testing.T) {
	content := []byte(`{"url":"mxc://example.org/AbC_-1","info":{"thumbnail_url":"mxc://example.org/thumb"},"other":"mxc://elsewhere.org/x","again":"mxc://example.org/AbC_-1","odd":"mxc://example.org/a.b"}`)
	got := localMediaIDs(content, "example.org")
	if !slices.Equal(got, []string{"AbC_-1", "thumb"}) {
		t.Fatalf("got %v", got)
	}
	if ids := localMediaIDs([]byte(`{"body":"no media"}`), "example.org"); ids != nil {
		t.Fatalf("got %v", ids)
	}
}
