package server

import (
	"luxchat/internal/federation"
	"luxchat/internal/rooms"
)

// roomsFederation gives the rooms service the federation client, key
// look-ups and policy.
func (s *Server) roomsFederation(policy *federation.Policy) *rooms.Federation {
	return &rooms.Federation{Client: s.Federation, VerifyKey: s.Keys.VerifyKey, Allowed: policy.Allowed}
}
