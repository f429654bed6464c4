// Package push holds push rules: the server-default rule set of the spec
// ("Predefined Rules", plus the poll rules of MSC3930), a user's rule set
// and its edits (the push rules API), and the evaluation of a compiled
// rule set against an event.
//
// It is pure: it imports only the standard library and matrix/errcode,
// never storage or HTTP. Storing rule sets and acting on the results is
// the job of package notifications.
package push
