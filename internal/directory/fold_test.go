package directory

import (
	"slices"
	"testing"
)

func TestFold(t *testing.T) {
	for in, want := range map[string]string{
		"Émile":        "emile",
		"Müller":       "muller",
		"Straße":       "strasse",
		"ŁUKASZ Øre":   "lukasz ore",
		"ﬁnn":          "finn",
		"Zoë Ångström": "zoe angstrom",
		"Ελένη":        "ελενη",
	} {
		if got := Fold(in); got != want {
			t.Errorf("Fold(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWords(t *testing.T) {
	for in, want := range map[string][]string{
		"Jean-Luc Picard":    {"jean", "luc", "picard"},
		"anna.MÜLLER_2 anna": {"anna", "muller", "2"},
		"  ":                 {},
	} {
		if got := Words(in); !slices.Equal(got, want) {
			t.Errorf("Words(%q) = %q, want %q", in, got, want)
		}
	}
}
