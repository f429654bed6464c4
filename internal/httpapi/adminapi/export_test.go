package adminapi

// RoutePatterns lists every route of the admin API ("METHOD /path"), for
// the tests that go over all of them.
func RoutePatterns() []string {
	var out []string
	for _, r := range (&API{}).routes() {
		out = append(out, r.pattern)
	}
	return out
}
