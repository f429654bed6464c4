package search

import (
	"strings"
	"unicode"
)

// Bounds on what one search term may cost.
const (
	maxTerms    = 16
	maxTermLen  = 64 // runes
	maxTermText = 4096
)

// Tokenize splits a search term into lowercase words of letters, digits and
// marks. Everything else separates words, so no character of the user's
// input ever reaches the database as query syntax ("*", quotes, NEAR, OR,
// "-", parentheses, ":", "^" are all separators or plain words that the
// store quotes). Duplicates are dropped; at most maxTerms words are kept.
func Tokenize(s string) []string {
	if len(s) > maxTermText {
		s = s[:maxTermText]
	}
	var out []string
	seen := map[string]bool{}
	for _, w := range strings.FieldsFunc(s, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r)
	}) {
		w = strings.ToLower(w)
		if r := []rune(w); len(r) > maxTermLen {
			w = string(r[:maxTermLen])
		}
		if seen[w] || !hasLetterOrDigit(w) {
			continue
		}
		seen[w] = true
		out = append(out, w)
		if len(out) == maxTerms {
			break
		}
	}
	return out
}

func hasLetterOrDigit(w string) bool {
	for _, r := range w {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return true
		}
	}
	return false
}
