package directory

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// specialFolds are letters that lose no mark under decomposition but are
// written out in plain Latin letters by people who cannot type them.
var specialFolds = map[rune]string{
	'ß': "ss", 'ẞ': "ss", 'æ': "ae", 'Æ': "ae", 'œ': "oe", 'Œ': "oe",
	'ø': "o", 'Ø': "o", 'đ': "d", 'Đ': "d", 'ð': "d", 'Ð': "d",
	'ł': "l", 'Ł': "l", 'þ': "th", 'Þ': "th", 'ı': "i",
}

// Fold makes text comparable regardless of case and accents: compatibility
// decomposition, combining marks dropped, lower case, a few letters
// written out (é→e, ü→u, ß→ss). Noncharacters are dropped so that a
// folded string never holds U+10FFFF (see store.prefixEnd).
func Fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range norm.NFKD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r), r == utf8.RuneError, r >= 0xFFFE && r&0xFFFE == 0xFFFE:
			continue
		}
		if f, ok := specialFolds[r]; ok {
			b.WriteString(f)
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// maxWordBytes bounds one indexed or searched word.
const maxWordBytes = 64

// Words folds s and splits it into words: runs of letters and digits.
// Duplicates are dropped; the order is kept.
func Words(s string) []string {
	f := strings.FieldsFunc(Fold(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	seen := make(map[string]bool, len(f))
	out := f[:0]
	for _, w := range f {
		if len(w) > maxWordBytes {
			w = truncateUTF8(w, maxWordBytes)
		}
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

func truncateUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
