package adminapi

import (
	"encoding/json"
	"strconv"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// Query parameters as Synapse's admin API reads them.

// queryBool reads a "true"/"false" parameter; nil when absent.
func queryBool(r *httputil.Request, name string) (*bool, error) {
	if !r.URL.Query().Has(name) {
		return nil, nil
	}
	switch r.Query(name) {
	case "true":
		v := true
		return &v, nil
	case "false":
		v := false
		return &v, nil
	}
	return nil, errcode.InvalidParam("%s must be true or false", name)
}

// maxPage bounds the limit of one page.
const maxPage = 1000

// paging reads from (default 0) and limit (default 100, at most maxPage).
func paging(r *httputil.Request) (from, limit int, err error) {
	from, err = queryInt(r, "from", 0)
	if err != nil {
		return 0, 0, err
	}
	limit, err = queryInt(r, "limit", 100)
	if err != nil {
		return 0, 0, err
	}
	return from, min(limit, maxPage), nil
}

// queryInt reads a non-negative integer parameter of at most 2^31.
func queryInt(r *httputil.Request, name string, def int) (int, error) {
	n, err := r.QueryInt(name, int64(def))
	if err != nil {
		return 0, err
	}
	if n > 1<<31 {
		return 0, errcode.InvalidParam("%s is out of range", name)
	}
	return int(n), nil
}

// direction reads dir, f or b (dflt when absent): true for backwards.
func direction(r *httputil.Request, dflt string) (backward bool, err error) {
	dir := r.Query("dir")
	if dir == "" {
		dir = dflt
	}
	if dir != "f" && dir != "b" {
		return false, errcode.InvalidParam("dir must be f or b")
	}
	return dir == "b", nil
}

// nextToken is a page's next_token: the offset of the next page, or nil
// when this page is the last.
func nextToken(from, n, total int) any {
	if from+n < total && n > 0 {
		return strconv.Itoa(from + n)
	}
	return nil
}

// optionalNull is a body field that may be absent (Set false), null (Value
// nil) or a value.
type optionalNull[T any] struct {
	Set   bool
	Value *T
}

func (n *optionalNull[T]) UnmarshalJSON(data []byte) error {
	n.Set = true
	if string(data) == "null" {
		n.Value = nil
		return nil
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	n.Value = &v
	return nil
}
