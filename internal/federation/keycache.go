package federation

import (
	"crypto/ed25519"
	"time"

	"luxchat/internal/store"
)

// keyRowTTL bounds how long a key row read from the store answers from
// memory: every PDU of a transaction asks for the same key, and a key row
// changes only when the server's keys are fetched again (which forgets
// the rows here) or, in a cluster, by another process.
const keyRowTTL = time.Minute

type keyRow struct {
	sk  store.ServerKey
	pub ed25519.PublicKey
	at  time.Time
}

// memKey answers cached from memory when a fresh row there accepts ts;
// otherwise the store decides.
func (k *Keys) memKey(server, keyID string, ts int64, allowOld bool) (ed25519.PublicKey, bool) {
	v, ok := k.rows.Load(server + "\x00" + keyID)
	if !ok {
		return nil, false
	}
	r := v.(keyRow)
	if time.Since(r.at) > keyRowTTL || !keyRowValid(r.sk, ts, allowOld) {
		return nil, false
	}
	return r.pub, true
}

func (k *Keys) rememberKey(sk store.ServerKey, pub ed25519.PublicKey) {
	k.rows.Store(sk.ServerName+"\x00"+sk.KeyID, keyRow{sk: sk, pub: pub, at: time.Now()})
}

// forgetKeys drops a server's rows after its keys were stored anew.
func (k *Keys) forgetKeys(server string) {
	k.rows.Range(func(key, v any) bool {
		if v.(keyRow).sk.ServerName == server {
			k.rows.Delete(key)
		}
		return true
	})
}

// keyRowValid is the validity rule of cached: an old key for timestamps
// before its expiry (when old keys are allowed), a current one up to its
// valid_until_ts.
func keyRowValid(sk store.ServerKey, ts int64, allowOld bool) bool {
	if sk.ExpiredTS > 0 {
		return allowOld && ts < sk.ExpiredTS
	}
	return ts <= sk.ValidUntilTS
}
