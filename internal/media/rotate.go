package media

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	"luxchat/internal/store"
)

// rotateGrace is how long RotateKey waits for uploads in flight.
var rotateGrace = 2 * time.Second

// RotateResult reports a key rotation.
type RotateResult struct {
	KeyID     string
	NewKey    string // base64; for keys kept in the environment
	Rewrapped int
	Failed    int // wrapped keys that did not open (damaged rows)
}

// RotateKey makes a new master key current and re-wraps every file key
// under it; blobs are not rewritten. With a key file, the new key is first
// added in front of the old ones (a running server picks it up for new
// uploads and can still open everything), the rows are re-wrapped, and the
// old keys are dropped last, so a crash at any point loses nothing: run it
// again. With keys from the environment, the caller must hand NewKey to
// the server (stop it first).
func RotateKey(ctx context.Context, st *store.Store, k *Keyring, progress func(done int)) (RotateResult, error) {
	nk := newMasterKey(newFileKey())
	k.mu.Lock()
	all := append([]masterKey{nk}, k.keys...)
	k.mu.Unlock()
	if k.path != "" {
		if err := writeKeyFile(k.path, all); err != nil {
			return RotateResult{}, err
		}
		if err := k.reload(); err != nil {
			return RotateResult{}, err
		}
	} else {
		k.mu.Lock()
		k.keys = all
		k.mu.Unlock()
	}
	res := RotateResult{KeyID: nk.id, NewKey: base64.StdEncoding.EncodeToString(nk.key)}
	failed := map[string]bool{}
	pass := func() error {
		for {
			batch, err := st.WrappedKeysNotUnder(ctx, nk.id, 500+len(failed))
			if err != nil {
				return err
			}
			progressed := false
			for _, wk := range batch {
				if failed[wk.Blob] {
					continue
				}
				key, err := k.unwrap(wk.WrappedKey, wk.KeyID, wk.Blob)
				if err != nil {
					failed[wk.Blob] = true
					continue
				}
				wrapped, id, err := wrapWith(nk, key, wk.Blob)
				if err != nil {
					return err
				}
				if err := st.InTx(ctx, func(tx *store.Tx) error { return tx.ReplaceWrappedKey(ctx, wk, wrapped, id) }); err != nil {
					return err
				}
				res.Rewrapped++
				progressed = true
				if progress != nil && res.Rewrapped%500 == 0 {
					progress(res.Rewrapped)
				}
			}
			if !progressed {
				return nil
			}
		}
	}
	if err := pass(); err != nil {
		return res, fmt.Errorf("rotate media key: %w", err)
	}
	if k.path != "" {
		// Uploads that wrapped their key just before the server saw the
		// new key file commit within moments: catch them, then drop the old keys.
		time.Sleep(rotateGrace)
		if err := pass(); err != nil {
			return res, fmt.Errorf("rotate media key: %w", err)
		}
		if err := writeKeyFile(k.path, []masterKey{nk}); err != nil {
			return res, err
		}
		if err := k.reload(); err != nil {
			return res, err
		}
	}
	res.Failed = len(failed)
	if progress != nil {
		progress(res.Rewrapped)
	}
	return res, nil
}
