package pages

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Link is a button of a page. Href must be a URL this server built or
// checked (it is trusted as is, custom schemes of native clients
// included); Label is shown as text.
type Link struct {
	Href  string
	Label string
}

// Key is an argument of a page's string that is itself a key of the
// strings table, translated with the page.
type Key string

// Form is a button that posts hidden fields to Action (a path of this
// server): for steps a link from another site must not be able to take.
// Inputs are fields the user fills in, each with its label; Get sends the
// form with GET (a look-up that changes nothing); Secondary styles the
// button as the lesser choice (Deny beside Allow).
type Form struct {
	Action    string
	Fields    map[string]string
	Inputs    []Input
	Label     string
	Get       bool
	Secondary bool
}

// Input is a field of a form. Type is text or password; Autocomplete the
// browser's hint (username, current-password, one-time-code).
type Input struct {
	Name, Label, Type, Autocomplete, Value string
}

// Item is an entry of a list on a page (a session of the account page):
// a heading, lines of text and its buttons.
type Item struct {
	Heading string
	Lines   []string
	Forms   []Form
}

// Page is one page to show. Title and Message are keys of the strings
// table; their arguments fill %s in the translated string, as text.
type Page struct {
	Status      int
	Title       string
	TitleArgs   []any
	Message     string
	MessageArgs []any
	Links       []Link
	Forms       []Form
	// FormTargets are origins besides this server's that a form's post
	// may be redirected to (Content-Security-Policy form-action).
	FormTargets []string
	// AuthDone runs the spec's script that tells the client a
	// user-interactive auth fallback is done.
	AuthDone bool
	// Alert is a key shown first, announced to screen readers (a failed
	// login); Notes are more paragraphs, already translated; Items a list.
	Alert     string
	AlertArgs []any
	Notes     []string
	Items     []Item
}

type view struct {
	Lang, Title, Message, Nonce, Alert string
	Notes                              []string
	Links                              []viewLink
	Forms                              []Form
	Items                              []Item
	AuthDone                           bool
}

type viewLink struct {
	Href  template.URL
	Label string
}

var tmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}}</title>
<style nonce="{{.Nonce}}">
body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1b1d22;margin:0;padding:2rem 1rem}
main{max-width:32rem;margin:0 auto;background:#fff;border-radius:8px;padding:1.5rem 2rem;box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.4rem;margin-top:0}
ul{list-style:none;padding:0}
li{margin:.6rem 0}
.button{display:block;box-sizing:border-box;width:100%;border:0;font:inherit;cursor:pointer;text-align:center;padding:.7rem 1rem;border-radius:6px;background:#0b5cad;color:#fff;text-decoration:none;font-weight:600}
.button:focus,.button:hover{background:#084683;outline:3px solid #f2b700}
.secondary{background:#fff;color:#0b5cad;border:2px solid #0b5cad}
.secondary:focus,.secondary:hover{background:#e8f0f9}
label{display:block;font-weight:600;margin:.8rem 0 .3rem}
input[type=text],input[type=password]{box-sizing:border-box;width:100%;font:inherit;padding:.5rem;border:1px solid #6b7280;border-radius:4px}
input:focus{outline:3px solid #f2b700}
form.fields button{margin-top:1rem}
.alert{background:#fdecea;color:#8a1c12;border-left:4px solid #c0392b;padding:.6rem .8rem}
.item{border-top:1px solid #d0d4da;padding-top:.6rem}
.item h2{font-size:1.05rem;margin:.2rem 0}
.item p{margin:.2rem 0;color:#3d4350}
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
{{if .Alert}}<p class="alert" role="alert">{{.Alert}}</p>{{end}}
{{if .Message}}<p>{{.Message}}</p>{{end}}
{{range .Notes}}<p>{{.}}</p>{{end}}
{{if .Links}}<ul>{{range .Links}}<li><a class="button" href="{{.Href}}">{{.Label}}</a></li>{{end}}</ul>{{end}}
{{if .Forms}}<ul>{{range .Forms}}<li>{{template "form" .}}</li>{{end}}</ul>{{end}}
{{if .Items}}<ul>{{range .Items}}<li class="item"><h2>{{.Heading}}</h2>{{range .Lines}}<p>{{.}}</p>{{end}}{{range .Forms}}{{template "form" .}}{{end}}</li>{{end}}</ul>{{end}}
</main>
{{if .AuthDone}}<script nonce="{{.Nonce}}">
if (window.onAuthDone) {
    window.onAuthDone();
} else if (window.opener && window.opener.postMessage) {
    window.opener.postMessage("authDone", "*");
}
</script>{{end}}
</body>
</html>
{{define "form"}}<form method="{{if .Get}}get{{else}}post{{end}}" action="{{.Action}}"{{if .Inputs}} class="fields"{{end}}>{{range $k, $v := .Fields}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}{{range .Inputs}}<label for="f-{{.Name}}">{{.Label}}</label><input id="f-{{.Name}}" name="{{.Name}}" type="{{.Type}}"{{if .Autocomplete}} autocomplete="{{.Autocomplete}}"{{end}} value="{{.Value}}" required>{{end}}<button class="button{{if .Secondary}} secondary{{end}}" type="submit">{{.Label}}</button></form>{{end}}`))

// Render writes p in the language the browser prefers, with headers that
// keep the page from being framed, cached, or leaking its URL (which may
// carry a login token) as a referrer.
func Render(w http.ResponseWriter, r *http.Request, p Page) {
	lang := Language(r.Header.Get("Accept-Language"))
	nonce := newNonce()
	v := view{Lang: lang, Title: T(lang, p.Title, p.TitleArgs...), Nonce: nonce, AuthDone: p.AuthDone, Forms: p.Forms, Notes: p.Notes, Items: p.Items}
	if p.Alert != "" {
		v.Alert = T(lang, p.Alert, p.AlertArgs...)
	}
	if p.Message != "" {
		v.Message = T(lang, p.Message, p.MessageArgs...)
	}
	for _, l := range p.Links {
		v.Links = append(v.Links, viewLink{Href: template.URL(l.Href), Label: l.Label})
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, v); err != nil {
		http.Error(w, "page failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	formAction := "'self'"
	for _, o := range p.FormTargets {
		if !strings.ContainsAny(o, " ;,'\"") {
			formAction += " " + o
		}
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; script-src 'nonce-"+nonce+"'; img-src 'self' data:; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Language", lang)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	status := p.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// T translates key into lang, filling %s with args.
func T(lang, key string, args ...any) string {
	s, ok := text[lang][key]
	if !ok {
		s, ok = text["en"][key]
	}
	if !ok {
		s = key
	}
	if len(args) > 0 {
		tr := make([]any, len(args))
		for i, a := range args {
			if k, ok := a.(Key); ok {
				a = T(lang, string(k))
			}
			tr[i] = a
		}
		s = fmt.Sprintf(s, tr...)
	}
	return s
}

// Language picks en, fr, de or lb from an Accept-Language header by the
// weights it gives; English when none is offered.
func Language(header string) string {
	type choice struct {
		lang string
		q    float64
		i    int
	}
	var cs []choice
	for i, part := range strings.Split(header, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		base, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		if _, ok := text[base]; !ok {
			continue
		}
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 0 {
				continue
			}
			q = f
		}
		cs = append(cs, choice{base, q, i})
	}
	if len(cs) == 0 {
		return "en"
	}
	sort.SliceStable(cs, func(a, b int) bool { return cs[a].q > cs[b].q })
	return cs[0].lang
}

func newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}
