// Package accounts manages users, devices, access and refresh tokens,
// login, user-interactive auth, registration (open, by token, by shared
// secret) and profiles.
//
// Secrets at rest: passwords are argon2id PHC strings (bcrypt hashes from
// Synapse are accepted and upgraded on login); access and refresh tokens
// are stored only as SHA-256 hashes.
//
// Errors meant for clients are *errcode.Error; user-interactive auth answers
// with *AuthRequired, which the client API turns into the spec's 401 body.
//
// It imports store and internal/matrix, never HTTP packages.
package accounts
