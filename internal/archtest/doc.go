// Package archtest holds no code, only a test that the import rules of
// docs/architecture.md hold: dependencies point one way (matrix ← store ←
// domain packages ← httpapi ← server), so that, for one, handlers cannot
// open transactions because httpapi does not import store.
package archtest
