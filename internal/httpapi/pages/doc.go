// Package pages renders the server's few HTML pages — the login pages of
// single sign-on (choose a provider, confirm a client, errors, the
// user-interactive auth fallback) — with html/template: no external
// assets, a strict Content-Security-Policy with a per-answer nonce, and
// the strings of one small table in English, French, German and
// Luxembourgish, chosen by the browser's Accept-Language. It imports
// only the standard library.
package pages
