package errcode

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestWrapKeepsCauseOutOfTheBody(t *testing.T) {
	cause := errors.New("disk on fire")
	plain := Unknown("could not do it").With("retry_after_ms", 5)
	wrapped := plain.Wrap(cause)

	if !errors.Is(wrapped, cause) || errors.Unwrap(wrapped) != cause {
		t.Fatal("the cause is not reachable through Unwrap")
	}
	if plain.Unwrap() != nil {
		t.Fatal("Wrap changed the error it was called on")
	}
	if wrapped.Error() != plain.Error() || strings.Contains(wrapped.Error(), "fire") {
		t.Fatalf("Error() = %q, want the client-safe %q", wrapped.Error(), plain.Error())
	}
	got, _ := json.Marshal(wrapped)
	want, _ := json.Marshal(plain)
	if string(got) != string(want) || strings.Contains(string(got), "fire") {
		t.Fatalf("body %s, want %s", got, want)
	}
	if e := wrapped.With("soft_logout", true); !errors.Is(e, cause) {
		t.Fatal("With lost the cause")
	}
	if e, ok := As(wrapped); !ok || e != wrapped {
		t.Fatal("As does not find the wrapped error itself")
	}
}
