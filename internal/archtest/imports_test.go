package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// root is the module's directory, seen from this package's.
const root = "../.."

// rule forbids the non-test files of the packages under a directory to
// import some packages.
type rule struct {
	under  string   // directory, relative to the module root
	except []string // directories under it the rule leaves out
	denied func(path string) bool
	why    string
}

var rules = []rule{
	{
		under:  "internal/httpapi",
		denied: func(p string) bool { return p == "luxchat/internal/store" },
		why:    "handlers decode, call the domain and encode; the store is the domain's",
	},
	{
		under:  "internal",
		except: []string{"internal/httpapi", "internal/server", "internal/testserver"},
		denied: func(p string) bool { return within(p, "luxchat/internal/httpapi") },
		why:    "the domain never imports the HTTP adapters",
	},
	{
		under: "internal/rooms",
		denied: func(p string) bool {
			return within(p, "luxchat/internal/roomread") || within(p, "luxchat/internal/roomfed") || within(p, "luxchat/internal/federation")
		},
		why: "rooms is the one event pipeline: the read side (roomread) and rooms over federation (roomfed) build on it, never the reverse",
	},
	{
		under: "internal/roomread",
		denied: func(p string) bool {
			return within(p, "luxchat/internal/roomfed") || within(p, "luxchat/internal/federation")
		},
		why: "the read side reads through the pipeline (rooms), which alone reaches other servers (rooms.Remote)",
	},
	{
		under: "internal/webclient",
		denied: func(p string) bool {
			return strings.Contains(strings.SplitN(p, "/", 2)[0], ".") || within(p, "luxchat") && p != "luxchat/internal/config"
		},
		why: "the web client's server is static files: the standard library and config only",
	},
	{
		under: "internal/matrix",
		denied: func(p string) bool {
			return strings.Contains(strings.SplitN(p, "/", 2)[0], ".") && !within(p, "golang.org/x/crypto") ||
				within(p, "luxchat") && !within(p, "luxchat/internal/matrix")
		},
		why: "protocol code is pure: the standard library and golang.org/x/crypto only",
	},
}

// within reports whether import path p is pkg or a package under it.
func within(p, pkg string) bool { return p == pkg || strings.HasPrefix(p, pkg+"/") }

func TestImportRules(t *testing.T) {
	for _, r := range rules {
		checked := 0
		err := filepath.WalkDir(filepath.Join(root, r.under), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			if d.IsDir() {
				for _, e := range r.except {
					if within(rel, e) {
						return filepath.SkipDir
					}
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			checked++
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if r.denied(p) {
					t.Errorf("%s imports %s: %s", rel, p, r.why)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if checked == 0 {
			t.Errorf("no files under %s: the rule checks nothing", r.under)
		}
	}
}
