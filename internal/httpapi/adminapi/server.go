package adminapi

import (
	"sort"
	"strconv"

	"luxchat/internal/federation"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
)

// Version is the server version the admin API reports.
var Version = "luxchat"

// GET /_synapse/admin/v1/server_version
func (a *API) serverVersion(r *httputil.Request) (any, error) {
	return map[string]string{"server_version": Version}, nil
}

// destination is a federation destination in Synapse's shape.
type destination struct {
	Destination                  string `json:"destination"`
	RetryLastTS                  int64  `json:"retry_last_ts"`
	RetryInterval                int64  `json:"retry_interval"`
	FailureTS                    *int64 `json:"failure_ts"`
	LastSuccessfulStreamOrdering *int64 `json:"last_successful_stream_ordering"`
}

func destinationOf(d federation.DestinationStatus) destination {
	out := destination{Destination: d.Name, RetryInterval: d.RetryInterval.Milliseconds()}
	if !d.LastFailed.IsZero() {
		out.RetryLastTS = d.LastFailed.UnixMilli()
	}
	if !d.FailedAt.IsZero() {
		ts := d.FailedAt.UnixMilli()
		out.FailureTS = &ts
	}
	return out
}

func (a *API) outbox() (*federation.Queue, error) {
	if a.Federation == nil {
		return nil, errcode.Unrecognized("federation is disabled")
	}
	return a.Federation, nil
}

// GET /_synapse/admin/v1/federation/destinations
func (a *API) listDestinations(r *httputil.Request) (any, error) {
	q, err := a.outbox()
	if err != nil {
		return nil, err
	}
	from, limit, backward, err := pageParams(r, 100, "f")
	if err != nil {
		return nil, err
	}
	all := make([]destination, 0)
	for _, d := range q.Destinations() {
		all = append(all, destinationOf(d))
	}
	key := map[string]func(d destination) int64{
		"retry_last_ts":  func(d destination) int64 { return d.RetryLastTS },
		"retry_interval": func(d destination) int64 { return d.RetryInterval },
		"failure_ts": func(d destination) int64 {
			if d.FailureTS == nil {
				return 0
			}
			return *d.FailureTS
		},
		"last_successful_stream_ordering": func(d destination) int64 { return 0 },
	}
	switch order := r.Query("order_by"); order {
	case "", "destination":
	default:
		k, ok := key[order]
		if !ok {
			return nil, errcode.InvalidParam("unknown order_by %q", order)
		}
		sort.SliceStable(all, func(i, j int) bool { return k(all[i]) < k(all[j]) })
	}
	if backward {
		for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
			all[i], all[j] = all[j], all[i]
		}
	}
	total := len(all)
	page := all[min(from, total):min(from+limit, total)]
	out := map[string]any{"destinations": page, "total": total}
	if from+len(page) < total && len(page) > 0 {
		out["next_token"] = strconv.Itoa(from + len(page))
	}
	return out, nil
}

// destinationName reads a valid {destination}.
func destinationName(r *httputil.Request) (string, error) {
	name := r.Var("destination")
	if id.ValidServerName(name) != nil {
		return "", errcode.InvalidParam("invalid server name")
	}
	return name, nil
}

// GET /_synapse/admin/v1/federation/destinations/{destination}
func (a *API) getDestination(r *httputil.Request) (any, error) {
	q, err := a.outbox()
	if err != nil {
		return nil, err
	}
	name, err := destinationName(r)
	if err != nil {
		return nil, err
	}
	d, ok := q.Destination(name)
	if !ok {
		return nil, errcode.NotFound("unknown destination")
	}
	return destinationOf(d), nil
}

// POST /_synapse/admin/v1/federation/destinations/{destination}/reset_connection
func (a *API) resetDestination(r *httputil.Request) (any, error) {
	q, err := a.outbox()
	if err != nil {
		return nil, err
	}
	name, err := destinationName(r)
	if err != nil {
		return nil, err
	}
	if _, ok := q.Destination(name); !ok {
		return nil, errcode.NotFound("unknown destination")
	}
	if !q.ResetBackoff(name) {
		return nil, errcode.InvalidParam("the connection to %s is not in back-off", name)
	}
	return struct{}{}, nil
}
