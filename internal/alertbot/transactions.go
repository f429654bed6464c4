package alertbot

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
)

// maxTransactionBytes bounds a transaction the bot reads.
const maxTransactionBytes = 64 << 20

// transaction is what the bot reads of an application service
// transaction.
type transaction struct {
	Events      []txnEvent `json:"events"`
	DeviceLists *struct {
		Changed []string `json:"changed"`
		Left    []string `json:"left"`
	} `json:"org.matrix.msc3202.device_lists"`
	OTKCounts        map[string]map[string]map[string]int `json:"org.matrix.msc3202.device_one_time_keys_count"`
	FallbackKeyTypes map[string]map[string][]string       `json:"org.matrix.msc3202.device_unused_fallback_key_types"`
}

type txnEvent struct {
	Type     string  `json:"type"`
	RoomID   string  `json:"room_id"`
	Sender   string  `json:"sender"`
	StateKey *string `json:"state_key"`
	Content  struct {
		Membership string `json:"membership"`
	} `json:"content"`
}

// transactionsHandler serves what the server sends the bot's application
// service: transactions (and pings); queries for users and aliases get
// 404, since the bot has no namespace beyond its own id.
func (b *Bot) transactionsHandler(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	txn := func(w http.ResponseWriter, r *http.Request) {
		var t transaction
		if err := json.NewDecoder(io.LimitReader(r.Body, maxTransactionBytes)).Decode(&t); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"errcode": "M_BAD_JSON", "error": "not a transaction"})
			return
		}
		b.handle(ctx, &t)
		writeJSON(w, http.StatusOK, struct{}{})
	}
	mux.HandleFunc("PUT /_matrix/app/v1/transactions/{txnId}", txn)
	mux.HandleFunc("POST /_matrix/app/v1/ping", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, struct{}{}) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"errcode": "M_NOT_FOUND", "error": "not found"})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"errcode": "M_UNAUTHORIZED", "error": "no hs_token"})
			return
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(b.hsToken)) != 1 {
			writeJSON(w, http.StatusForbidden, map[string]string{"errcode": "M_FORBIDDEN", "error": "bad hs_token"})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// handle acts on a transaction: invites from this server's users are
// accepted; changed device lists are queried again at the next post;
// one-time keys are topped up when the server runs low, and a fallback
// key replaces a used one. The work that talks to the server runs apart,
// after the answer (the server does not wait on it).
func (b *Bot) handle(ctx context.Context, t *transaction) {
	for _, ev := range t.Events {
		if ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == b.userID && ev.Content.Membership == "invite" &&
			strings.HasSuffix(ev.Sender, ":"+b.opts.ServerName) {
			b.background(ctx, func(ctx context.Context) {
				if _, err := b.Join(ctx, ev.RoomID); err != nil {
					b.log.Warn("invite not accepted", "room", ev.RoomID, "inviter", ev.Sender, "err", err)
				}
			})
		}
	}
	if l := t.DeviceLists; l != nil {
		b.staleDevices(l.Changed)
		b.forgetDevices(l.Left)
	}
	if b.DeviceID() == "" {
		return // not set up: the setup uploads what is needed
	}
	count, hasCount := t.OTKCounts[b.userID][b.deviceID]["signed_curve25519"]
	types, hasTypes := t.FallbackKeyTypes[b.userID][b.deviceID]
	needFallback := hasTypes && !slices.Contains(types, "signed_curve25519")
	if (hasCount && count < otkTarget/2) || needFallback {
		if !hasCount {
			count = -1
		}
		b.background(ctx, func(ctx context.Context) {
			if err := b.upload(ctx, false, count, needFallback); err != nil {
				b.log.Warn("one-time keys not topped up", "err", err)
			}
		})
	}
}

// background runs f apart until it ends or the bot stops.
func (b *Bot) background(ctx context.Context, f func(context.Context)) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f(ctx)
	}()
}
