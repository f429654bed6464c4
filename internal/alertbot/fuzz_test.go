package alertbot

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"luxchat/internal/e2ee/e2eetest"
)

// FuzzParseDeviceKeys: any device keys object is refused or gives a
// device whose ids are the asked ones and whose keys are signed by it.
func FuzzParseDeviceKeys(f *testing.F) {
	dev := e2eetest.NewDevice("@u:hs", "DEV")
	good, _ := json.Marshal(dev.DeviceKeys())
	f.Add(good)
	f.Add([]byte(`{"user_id":"@u:hs","device_id":"DEV","keys":{}}`))
	f.Add([]byte(`{"user_id":"@u:hs","device_id":"DEV","keys":{"ed25519:DEV":"!!","curve25519:DEV":"x"},"signatures":{"@u:hs":{"ed25519:DEV":5}}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := parseDeviceKeys(raw, "@u:hs", "DEV")
		if err != nil {
			return
		}
		if d.UserID != "@u:hs" || d.DeviceID != "DEV" || d.Ed25519 == "" || d.Curve == "" {
			t.Fatalf("accepted %s as %+v", raw, d)
		}
	})
}

// FuzzTransaction: the bot's transactions listener answers any body with
// 200 or 400, never a crash.
func FuzzTransaction(f *testing.F) {
	f.Add(`{"events":[{"type":"m.room.member","state_key":"@alerts:hs","sender":"@a:other","room_id":"!r:hs","content":{"membership":"invite"}}]}`)
	f.Add(`{"org.matrix.msc3202.device_lists":{"changed":["@a:hs"],"left":["@b:hs"]},"org.matrix.msc3202.device_one_time_keys_count":{"@alerts:hs":{"D":{"signed_curve25519":1}}}}`)
	f.Add(`{"events":null}`)
	f.Add(`nope`)
	b := &Bot{userID: "@alerts:hs", hsToken: "tok", opts: Options{ServerName: "hs"}, ready: make(chan struct{}), devices: map[string]*userDevices{}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the joins an invite starts end at once
	h := b.transactionsHandler(ctx)
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPut, "/_matrix/app/v1/transactions/1", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 && w.Code != 400 {
			t.Fatalf("%q: %d", body, w.Code)
		}
	})
}
