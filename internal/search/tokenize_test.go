package search

import (
	"slices"
	"strings"
	"testing"
)

func TestTokenize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"Martians and MEN", []string{"martians", "and", "men"}},
		{`"quoted" NEAR(a b) OR -x c:d ^e *f* 'g'`, []string{"quoted", "near", "a", "b", "or", "x", "c", "d", "e", "f", "g"}},
		{`"unbalanced`, []string{"unbalanced"}},
		{"", nil},
		{`" * ( ) : ^ - ' & | ! <->`, nil},
		{"Café café CAFÉ", []string{"café"}},
		{"日本語 テキスト", []string{"日本語", "テキスト"}},
		{"e\u0301te", []string{"e\u0301te"}}, // combining mark stays in the word
	} {
		if got := Tokenize(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Tokenize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	many := Tokenize(strings.Repeat("w", 100) + " " + strings.Repeat("a b c d e f g h i j k l m n o p q r s t ", 100))
	if len(many) != maxTerms || len([]rune(many[0])) != maxTermLen {
		t.Fatalf("bounds: %d terms, first of %d runes", len(many), len([]rune(many[0])))
	}
}
