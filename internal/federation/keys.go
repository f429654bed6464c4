package federation

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"luxchat/internal/matrix/signing"
	"luxchat/internal/store"
)

// OwnKeyLifetime is how long our published key response is valid.
const OwnKeyLifetime = 7 * 24 * time.Hour

// refetchInterval keeps an unknown key id from making us fetch a server's
// keys more often than this.
const refetchInterval = 30 * time.Second

// ErrNoKey: no valid key with that id could be found for the server.
var ErrNoKey = errors.New("no valid server key")

// OldKey is one of our retired verify keys, published in old_verify_keys.
type OldKey struct {
	KeyID     string
	PublicKey string // unpadded base64
	ExpiredTS int64
}

// LoadOldKeys reads data_dir/old_signing.keys when it exists: one key per
// line, "<key id> <public key base64> <expired_ts ms>"; '#' starts a
// comment.
func LoadOldKeys(path string) ([]OldKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []OldKey
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("%s line %d: want \"<key id> <public key> <expired_ts>\"", path, n)
		}
		ts, err := strconv.ParseInt(f[2], 10, 64)
		pub, perr := signing.DecodeBase64(f[1])
		if err != nil || perr != nil || len(pub) != ed25519.PublicKeySize || signing.ValidKeyID(f[0]) != nil {
			return nil, fmt.Errorf("%s line %d: malformed key", path, n)
		}
		keys = append(keys, OldKey{KeyID: f[0], PublicKey: f[1], ExpiredTS: ts})
	}
	return keys, nil
}

// Keys fetches, verifies and caches other servers' signing keys, and
// builds our own key response. The database is the cache; mu guards the
// per-server fetch bookkeeping only and is never held across I/O. At most
// one fetch per server runs at a time; concurrent callers share it.
type Keys struct {
	ServerName string
	Key        signing.KeyPair
	OldKeys    []OldKey
	Store      *store.Store
	Client     *Client
	// Notaries are key servers asked (POST /_matrix/key/v2/query) when a
	// server cannot be reached directly; their own keys are fetched
	// directly from them.
	Notaries []string
	Now      func() time.Time

	mu        sync.Mutex
	lastFetch map[string]time.Time  // end of the last fetch per server
	inflight  map[string]*fetchCall // fetches under way
	rows      sync.Map              // server\x00key id → keyRow (keycache.go)
}

// NewKeys returns a key ring.
func NewKeys(serverName string, key signing.KeyPair, old []OldKey, st *store.Store, client *Client) *Keys {
	return &Keys{ServerName: serverName, Key: key, OldKeys: old, Store: st, Client: client, Now: time.Now,
		lastFetch: map[string]time.Time{}, inflight: map[string]*fetchCall{}}
}

type verifyKey struct {
	Key       string `json:"key"`
	ExpiredTS int64  `json:"expired_ts,omitempty"`
}

// KeyResponse is the body of /_matrix/key/v2/server.
type KeyResponse struct {
	ServerName    string               `json:"server_name"`
	ValidUntilTS  int64                `json:"valid_until_ts"`
	VerifyKeys    map[string]verifyKey `json:"verify_keys"`
	OldVerifyKeys map[string]verifyKey `json:"old_verify_keys"`
}

// OwnResponse is our signed /_matrix/key/v2/server answer.
func (k *Keys) OwnResponse() ([]byte, error) {
	resp := KeyResponse{
		ServerName:    k.ServerName,
		ValidUntilTS:  k.Now().Add(OwnKeyLifetime).UnixMilli(),
		VerifyKeys:    map[string]verifyKey{k.Key.ID(): {Key: k.Key.PublicBase64()}},
		OldVerifyKeys: map[string]verifyKey{},
	}
	for _, o := range k.OldKeys {
		if o.KeyID != k.Key.ID() {
			resp.OldVerifyKeys[o.KeyID] = verifyKey{Key: o.PublicKey, ExpiredTS: o.ExpiredTS}
		}
	}
	raw, err := json.Marshal(resp)
	if err != nil {
		return nil, err
	}
	return signing.SignJSON(raw, k.ServerName, k.Key)
}

// VerifyKey returns the public key keyID of server valid at ts (unix ms)
// for event signatures: a current key whose response is valid until at
// least ts, or an old key that expired after ts. Unknown or stale keys are
// fetched, directly and then through the notaries.
func (k *Keys) VerifyKey(ctx context.Context, server, keyID string, ts int64) (ed25519.PublicKey, error) {
	return k.lookup(ctx, server, keyID, ts, true)
}

// RequestKey returns the key keyID of server for authenticating a request
// now: only a current verify key counts, never an old_verify_keys entry
// (those are valid for events only).
func (k *Keys) RequestKey(ctx context.Context, server, keyID string) (ed25519.PublicKey, error) {
	return k.lookup(ctx, server, keyID, k.Now().UnixMilli(), false)
}

func (k *Keys) lookup(ctx context.Context, server, keyID string, ts int64, allowOld bool) (ed25519.PublicKey, error) {
	if server == k.ServerName {
		if keyID == k.Key.ID() {
			return k.Key.Public(), nil
		}
		for _, o := range k.OldKeys {
			if allowOld && o.KeyID == keyID && ts < o.ExpiredTS {
				return signing.DecodeBase64(o.PublicKey)
			}
		}
		return nil, fmt.Errorf("%w: %s %s", ErrNoKey, server, keyID)
	}
	if pub, ok := k.cached(ctx, server, keyID, ts, allowOld); ok {
		return pub, nil
	}
	ferr := k.fetchOnce(ctx, server)
	if pub, ok := k.cached(ctx, server, keyID, ts, allowOld); ok {
		return pub, nil
	}
	if ferr != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrNoKey, server, keyID, ferr)
	}
	return nil, fmt.Errorf("%w: %s %s", ErrNoKey, server, keyID)
}

func (k *Keys) cached(ctx context.Context, server, keyID string, ts int64, allowOld bool) (ed25519.PublicKey, bool) {
	if pub, ok := k.memKey(server, keyID, ts, allowOld); ok {
		return pub, true
	}
	sk, err := k.Store.ServerKey(ctx, server, keyID)
	if err != nil || sk.ExpiredTS > 0 && !allowOld {
		return nil, false
	}
	if sk.ExpiredTS > 0 && ts >= sk.ExpiredTS || sk.ExpiredTS == 0 && ts > sk.ValidUntilTS {
		return nil, false
	}
	pub, err := signing.DecodeBase64(sk.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, false
	}
	k.rememberKey(*sk, pub)
	return pub, true
}

var errFetchedRecently = errors.New("keys fetched recently")

// fetchCall is one in-flight Fetch that concurrent callers wait for.
type fetchCall struct {
	done chan struct{}
	err  error
}

// fetchOnce runs Fetch for server unless one is in flight (then it waits
// for that one) or one ended less than refetchInterval ago (then it
// returns errFetchedRecently). The fetch outlives a cancelled caller
// (others may wait for it), bounded by a minute.
func (k *Keys) fetchOnce(ctx context.Context, server string) error {
	k.mu.Lock()
	if c, ok := k.inflight[server]; ok {
		k.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if last, ok := k.lastFetch[server]; ok && k.Now().Sub(last) < refetchInterval {
		k.mu.Unlock()
		return errFetchedRecently
	}
	c := &fetchCall{done: make(chan struct{})}
	k.inflight[server] = c
	k.mu.Unlock()

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	c.err = k.Fetch(fctx, server)
	cancel()

	k.mu.Lock()
	delete(k.inflight, server)
	k.lastFetch[server] = k.Now()
	if len(k.lastFetch) > 10000 { // forget old entries rather than grow
		for name, t := range k.lastFetch {
			if k.Now().Sub(t) >= refetchInterval {
				delete(k.lastFetch, name)
			}
		}
	}
	k.mu.Unlock()
	close(c.done)
	return c.err
}

// Fetch gets server's keys directly, or from the first notary that has
// them, verifies them and stores them.
func (k *Keys) Fetch(ctx context.Context, server string) error {
	raw, err := k.Client.ServerKeys(ctx, server)
	if err == nil {
		if err = k.save(ctx, server, raw); err == nil {
			return nil
		}
	}
	errs := []error{fmt.Errorf("direct: %w", err)}
	for _, notary := range k.Notaries {
		if notary == server {
			continue
		}
		nerr := k.fetchFromNotary(ctx, notary, server)
		if nerr == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("notary %s: %w", notary, nerr))
	}
	return errors.Join(errs...)
}

func (k *Keys) fetchFromNotary(ctx context.Context, notary, server string) error {
	responses, err := k.Client.QueryServerKeys(ctx, notary, server)
	if err != nil {
		return err
	}
	var errs []error
	for _, raw := range responses {
		if err := k.verifyNotarySignature(ctx, notary, raw); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := k.save(ctx, server, raw); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	if len(errs) == 0 {
		return fmt.Errorf("no keys for %s", server)
	}
	return errors.Join(errs...)
}

// verifyNotarySignature checks that the notary signed the response with
// one of its current keys (fetched directly from it).
func (k *Keys) verifyNotarySignature(ctx context.Context, notary string, raw []byte) error {
	sigs, err := signing.Signatures(raw)
	if err != nil {
		return err
	}
	for keyID := range sigs[notary] {
		pub, err := k.notaryKey(ctx, notary, keyID)
		if err != nil {
			continue
		}
		if err := signing.VerifyJSON(raw, notary, keyID, pub); err == nil {
			return nil
		}
	}
	return fmt.Errorf("no valid signature of notary %s", notary)
}

func (k *Keys) notaryKey(ctx context.Context, notary, keyID string) (ed25519.PublicKey, error) {
	now := k.Now().UnixMilli()
	if pub, ok := k.cached(ctx, notary, keyID, now, false); ok {
		return pub, nil
	}
	raw, err := k.Client.ServerKeys(ctx, notary)
	if err != nil {
		return nil, err
	}
	if err := k.save(ctx, notary, raw); err != nil {
		return nil, err
	}
	if pub, ok := k.cached(ctx, notary, keyID, now, false); ok {
		return pub, nil
	}
	return nil, fmt.Errorf("%w: %s %s", ErrNoKey, notary, keyID)
}

// VerifyResponse checks a key response claimed to be server's: its
// server_name, its keys, and a valid self-signature by each of its
// verify_keys that signed it (at least one).
func VerifyResponse(raw []byte, server string) (*KeyResponse, error) {
	var r KeyResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("key response: %w", err)
	}
	if r.ServerName != server {
		return nil, fmt.Errorf("key response is for %q, not %q", r.ServerName, server)
	}
	for _, m := range []map[string]verifyKey{r.VerifyKeys, r.OldVerifyKeys} {
		for keyID, vk := range m {
			pub, err := signing.DecodeBase64(vk.Key)
			if err != nil || len(pub) != ed25519.PublicKeySize || signing.ValidKeyID(keyID) != nil {
				return nil, fmt.Errorf("key response of %s: malformed key %q", server, keyID)
			}
		}
	}
	sigs, err := signing.Signatures(raw)
	if err != nil {
		return nil, err
	}
	signed := 0
	for keyID := range sigs[server] {
		vk, ok := r.VerifyKeys[keyID]
		if !ok || !strings.HasPrefix(keyID, signing.AlgEd25519+":") {
			continue
		}
		pub, _ := signing.DecodeBase64(vk.Key)
		if err := signing.VerifyJSON(raw, server, keyID, pub); err != nil {
			return nil, fmt.Errorf("key response of %s: %w", server, err)
		}
		signed++
	}
	if signed == 0 {
		return nil, fmt.Errorf("key response of %s: %w", server, signing.ErrNoSignature)
	}
	return &r, nil
}

func (k *Keys) save(ctx context.Context, server string, raw []byte) error {
	r, err := VerifyResponse(raw, server)
	if err != nil {
		return err
	}
	now := k.Now().UnixMilli()
	var keys []store.ServerKey
	for keyID, vk := range r.VerifyKeys {
		keys = append(keys, store.ServerKey{ServerName: server, KeyID: keyID, PublicKey: vk.Key, ValidUntilTS: r.ValidUntilTS, FetchedTS: now})
	}
	for keyID, vk := range r.OldVerifyKeys {
		if _, current := r.VerifyKeys[keyID]; current || vk.ExpiredTS <= 0 {
			continue
		}
		keys = append(keys, store.ServerKey{ServerName: server, KeyID: keyID, PublicKey: vk.Key, ExpiredTS: vk.ExpiredTS, FetchedTS: now})
	}
	// Keep the server's own signatures only: a notary's is not ours to keep.
	own, err := keepSignaturesOf(raw, server)
	if err != nil {
		return err
	}
	defer k.forgetKeys(server)
	return k.Store.SaveServerKeys(ctx, store.ServerKeyResponse{ServerName: server, ValidUntilTS: r.ValidUntilTS, FetchedTS: now, Response: own}, keys)
}

func keepSignaturesOf(raw []byte, server string) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	var sigs map[string]json.RawMessage
	if err := json.Unmarshal(obj["signatures"], &sigs); err != nil {
		return nil, err
	}
	obj["signatures"], _ = json.Marshal(map[string]json.RawMessage{server: sigs[server]})
	return json.Marshal(obj)
}

// Query answers a notary request for server: our own response for us, the
// cached response when valid until minValidUntil, otherwise a fresh fetch
// (falling back to the cache). The answer carries our signature too. It
// returns nil, nil when nothing is known.
func (k *Keys) Query(ctx context.Context, server string, minValidUntil int64) ([]byte, error) {
	var raw []byte
	if server == k.ServerName {
		own, err := k.OwnResponse()
		if err != nil {
			return nil, err
		}
		return own, nil // already signed by us
	}
	cached, err := k.Store.ServerKeyResponse(ctx, server)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if cached != nil && cached.ValidUntilTS >= minValidUntil {
		raw = cached.Response
	} else if k.Client.Policy.Allowed(server) == nil {
		if ferr := k.fetchOnce(ctx, server); ferr == nil {
			if fresh, err := k.Store.ServerKeyResponse(ctx, server); err == nil {
				raw = fresh.Response
			}
		}
	}
	if raw == nil && cached != nil {
		raw = cached.Response
	}
	if raw == nil {
		return nil, nil
	}
	return signing.SignJSON(raw, k.ServerName, k.Key)
}
