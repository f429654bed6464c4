// Package id parses and validates Matrix identifiers: server names, user
// ids, room ids, room aliases and event ids, as the appendix "Identifier
// Grammar" defines them.
//
// Parsers accept everything the spec says servers must accept from remote
// servers (historical user ids, domain-less room ids); checks for what we
// create ourselves are separate (ValidLocalpart, NewUserID).
//
// It imports only the standard library.
package id
