package accounts

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"luxchat/internal/matrix/errcode"
)

// maxPasswordBytes bounds what is hashed, so that a huge password cannot be
// used to burn CPU.
const maxPasswordBytes = 1024

// argon2id output sizes (RFC 9106 recommends a 16-byte salt, 32-byte tag).
const (
	saltLen = 16
	keyLen  = 32
)

// hashParams are the argon2id costs new hashes use.
type hashParams struct {
	memoryKiB uint32
	time      uint32
	threads   uint8
}

// hashPassword returns a PHC string:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash> (unpadded base64).
// It is CPU and memory heavy: call it outside any database transaction.
func (s *Service) hashPassword(ctx context.Context, password string) (string, error) {
	if err := s.acquireHasher(ctx); err != nil {
		return "", err
	}
	defer s.releaseHasher()
	p := s.params()
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.time, p.memoryKiB, p.threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memoryKiB, p.time, p.threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

func (s *Service) params() hashParams {
	return hashParams{memoryKiB: s.cfg.Auth.PasswordHashMemoryKiB, time: s.cfg.Auth.PasswordHashTime, threads: 1}
}

// checkPassword reports whether password matches hash, an argon2id PHC
// string or a bcrypt hash ($2a$, $2b$, $2y$: accounts imported from
// Synapse). An empty or unknown hash never matches. needsRehash is true when
// the hash should be replaced by one with the current parameters.
func (s *Service) checkPassword(ctx context.Context, hash, password string) (ok, needsRehash bool, err error) {
	if err := s.acquireHasher(ctx); err != nil {
		return false, false, err
	}
	defer s.releaseHasher()
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		p, salt, key, err := parseArgon2id(hash)
		if err != nil {
			s.log.Warn("unreadable password hash", "err", err)
			return false, false, nil
		}
		got := argon2.IDKey([]byte(password), salt, p.time, p.memoryKiB, p.threads, uint32(len(key)))
		if subtle.ConstantTimeCompare(got, key) != 1 {
			return false, false, nil
		}
		return true, p != s.params() || len(salt) != saltLen || len(key) != keyLen, nil
	case strings.HasPrefix(hash, "$2"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, false, nil
		}
		if err != nil {
			s.log.Warn("unreadable bcrypt hash", "err", err)
			return false, false, nil
		}
		return true, true, nil
	}
	return false, false, nil
}

// parseArgon2id reads a PHC string, bounding the costs so that a corrupt
// or hostile row cannot make verification allocate gigabytes.
func parseArgon2id(hash string) (p hashParams, salt, key []byte, err error) {
	parts := strings.Split(hash, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("not an argon2id PHC string")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("unsupported argon2 version %q", parts[2])
	}
	var seen int
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, perr := strconv.ParseUint(v, 10, 32)
		if perr != nil {
			return p, nil, nil, fmt.Errorf("bad parameter %q", kv)
		}
		switch k {
		case "m":
			p.memoryKiB, seen = uint32(n), seen|1
		case "t":
			p.time, seen = uint32(n), seen|2
		case "p":
			if n > 255 {
				return p, nil, nil, fmt.Errorf("bad parameter %q", kv)
			}
			p.threads, seen = uint8(n), seen|4
		default:
			return p, nil, nil, fmt.Errorf("unknown parameter %q", k)
		}
	}
	if seen != 7 || p.time < 1 || p.time > 64 || p.threads < 1 || p.memoryKiB < 8*uint32(p.threads) || p.memoryKiB > 4<<20 {
		return p, nil, nil, fmt.Errorf("parameters out of range: %q", parts[3])
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errors.New("bad salt")
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 128 {
		return p, nil, nil, errors.New("bad hash")
	}
	return p, salt, key, nil
}

// acquireHasher bounds how many hashes run at once: each argon2id call holds
// memoryKiB of RAM, so unbounded parallel logins could exhaust memory.
func (s *Service) acquireHasher(ctx context.Context) error {
	select {
	case s.hashSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) releaseHasher() { <-s.hashSem }

// checkNewPassword applies the password policy to a new password.
func (s *Service) checkNewPassword(password string) error {
	if len(password) > maxPasswordBytes {
		return errcode.InvalidParam("password longer than %d bytes", maxPasswordBytes)
	}
	if len([]rune(password)) < s.cfg.Auth.PasswordMinLength {
		return errcode.WeakPassword("password shorter than %d characters", s.cfg.Auth.PasswordMinLength)
	}
	if password == "" {
		return errcode.WeakPassword("password must not be empty")
	}
	return nil
}
