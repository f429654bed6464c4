package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"luxchat/internal/matrix/signing"
	"luxchat/internal/store"
)

// addRequesterSignatures merges into the master keys of remote users in
// res the signatures the requester made on them with their user-signing
// key. Those are kept here only (the remote server never sees them), so
// a remote answer lacks them.
func (s *Service) addRequesterSignatures(ctx context.Context, requester string, res *QueryResult) error {
	if requester == "" {
		return nil
	}
	var remote []string
	for u := range res.MasterKeys {
		if !s.isLocal(u) {
			remote = append(remote, u)
		}
	}
	if len(remote) == 0 {
		return nil
	}
	sort.Strings(remote)
	sigs, err := s.store.Signatures(ctx, remote)
	if err != nil {
		return err
	}
	mine := map[[2]string][]store.Signature{}
	for _, sg := range sigs {
		if sg.SignerUser == requester {
			k := [2]string{sg.TargetUser, sg.TargetKey}
			mine[k] = append(mine[k], sg)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	for _, u := range remote {
		raw := res.MasterKeys[u]
		var k struct {
			Keys map[string]string `json:"keys"`
		}
		if json.Unmarshal(raw, &k) != nil {
			continue
		}
		var extra []store.Signature
		for keyID := range k.Keys {
			extra = append(extra, mine[[2]string{u, strings.TrimPrefix(keyID, signing.AlgEd25519+":")}]...)
		}
		if len(extra) == 0 {
			continue
		}
		out, err := withSignatures(string(raw), extra)
		if err != nil {
			return fmt.Errorf("master key of %s: %w", u, err)
		}
		res.MasterKeys[u] = json.RawMessage(out)
	}
	return nil
}
