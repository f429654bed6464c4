package pages

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestEveryStringTranslated(t *testing.T) {
	for lang, strs := range text {
		for key := range text["en"] {
			if strs[key] == "" {
				t.Errorf("%s: %s missing", lang, key)
			}
			if strings.Count(strs[key], "%s") != strings.Count(text["en"][key], "%s") {
				t.Errorf("%s: %s has other placeholders than English", lang, key)
			}
		}
	}
}

func TestLanguage(t *testing.T) {
	for header, want := range map[string]string{
		"":                        "en",
		"fr-LU,fr;q=0.9,en;q=0.8": "fr",
		"lb":                      "lb",
		"ja,de;q=0.5":             "de",
		"en;q=0.2, de-CH;q=0.7":   "de",
		"fr;q=0, de;q=bad, pt":    "en",
	} {
		if got := Language(header); got != want {
			t.Errorf("Language(%q) = %s, want %s", header, got, want)
		}
	}
}

func TestRenderEscapesAndLocks(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Accept-Language", "de")
	w := httptest.NewRecorder()
	Render(w, r, Page{Status: 403, Title: "title.confirm", TitleArgs: []any{"<b>evil</b>"}, Message: "reason.deactivated",
		Links: []Link{{Href: "io.element.app:/callback?loginToken=x", Label: "<i>go</i>"}}})
	body := w.Body.String()
	if w.Code != 403 || !strings.Contains(body, "Weiter zu &lt;b&gt;evil&lt;/b&gt;?") || strings.Contains(body, "<i>go") {
		t.Fatalf("status %d body %s", w.Code, body)
	}
	if !strings.Contains(body, `href="io.element.app:/callback?loginToken=x"`) {
		t.Fatalf("custom scheme link lost: %s", body)
	}
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || w.Header().Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("headers %v", w.Header())
	}
	if strings.Contains(body, "<script") {
		t.Fatal("script on a page without AuthDone")
	}
}

func TestRenderForms(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Accept-Language", "lb, fr;q=0.8")
	w := httptest.NewRecorder()
	Render(w, r, Page{Title: "title.reauth", Message: "msg.reauth", MessageArgs: []any{Key("action.deactivate")},
		Forms:       []Form{{Action: "/x?session=a&b", Fields: map[string]string{"csrf": `"><script>`}, Label: "LuxID"}},
		FormTargets: []string{"https://login.example.lu", "https://evil; script-src *"}})
	body := w.Body.String()
	if !strings.Contains(body, "Aktioun fir ze confirméieren: Äre Kont desaktivéieren.") || strings.Contains(body, `"><script>`) ||
		!strings.Contains(body, `action="/x?session=a&amp;b"`) {
		t.Fatalf("body %s", body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://login.example.lu;") {
		t.Fatalf("CSP %q", csp)
	}
}
