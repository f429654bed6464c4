package config

import "testing"

func TestSupportValues(t *testing.T) {
	for _, in := range []string{
		"support: {contacts: [{role: m.role.admin}]}",
		"support: {contacts: [{matrix_id: admin, role: m.role.admin}]}",
		"support: {contacts: [{email_address: nobody, role: m.role.admin}]}",
		"support: {contacts: [{email_address: a@b.test}]}",
		"support: {contacts: [{email_address: a@b.test, role: m.role.boss}]}",
		"support: {contacts: [{email_address: a@b.test, role: boss}]}",
		"support: {support_page: 'ftp://x.test/'}",
		"support: {support_page: help}",
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	c, err := Parse([]byte(`support:
  contacts:
    - {matrix_id: "@admin:example.org", email_address: admin@example.org, role: m.role.admin}
    - {email_address: security@example.org, role: m.role.security}
    - {matrix_id: "@ops:elsewhere.test", role: org.example.oncall}
  support_page: https://example.org/help
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Support.Contacts) != 3 || c.Support.Contacts[2].Role != "org.example.oncall" || c.Support.SupportPage != "https://example.org/help" {
		t.Fatalf("%+v", c.Support)
	}
}
