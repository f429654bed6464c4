package roomversion

import "testing"

func TestTable(t *testing.T) {
	all := All()
	if len(all) != 12 {
		t.Fatalf("got %d versions", len(all))
	}
	for i, v := range all {
		if v.ID != itoa(i+1) {
			t.Fatalf("version %d has id %q", i+1, v.ID)
		}
	}
	v12, _ := Get("12")
	if !v12.RoomIDFromCreate || v12.StateRes != StateResV21 || v12.Redaction != RedactV11 || !v12.KnockRestricted {
		t.Fatalf("v12 rules wrong: %+v", v12)
	}
	v1, _ := Get("1")
	if v1.EventFormat != FormatV1 || v1.StateRes != StateResV1 || !v1.CreatorInContent {
		t.Fatalf("v1 rules wrong: %+v", v1)
	}
	if v, _ := Get("6"); v.SpecialCaseAliases || !v.StrictCanonicalJSON {
		t.Fatalf("v6 rules wrong: %+v", v)
	}
	if _, ok := Get("13"); ok {
		t.Fatal("unknown version accepted")
	}
}
