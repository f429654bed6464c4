// Package accounts manages users, devices, access and refresh tokens,
// login, user-interactive auth, registration and profiles.
//
// It imports store and internal/matrix, never HTTP packages.
package accounts
