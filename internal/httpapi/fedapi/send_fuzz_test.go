package fedapi

import (
	"strings"
	"testing"
)

// FuzzParseTransaction: any body either parses within the limits or is
// refused with an error, never a panic.
func FuzzParseTransaction(f *testing.F) {
	f.Add([]byte(`{"origin":"a.test","origin_server_ts":1,"pdus":[],"edus":[]}`))
	f.Add([]byte(`{"origin":"a.test","pdus":[{"type":"m.room.message"}],"edus":[{"edu_type":"m.typing","content":{}}]}`))
	f.Add([]byte(`{"origin":"a.test","pdus":[1]}`))
	f.Add([]byte(`{"origin":"","pdus":[]}`))
	f.Add([]byte(`{"origin":"a.test","pdus":null}`))
	f.Add([]byte(`{"origin":"a.test","pdus":[` + strings.Repeat(`{},`, 50) + `{}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"origin":"a.test","pdus":[],"edus":[{"content":{}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		txn, err := parseTransaction(body)
		if err != nil {
			return
		}
		if txn.Origin == "" || txn.PDUs == nil || len(txn.PDUs) > maxTxnPDUs || len(txn.EDUs) > maxTxnEDUs {
			t.Fatalf("accepted an invalid transaction: %s", body)
		}
		for _, p := range txn.PDUs {
			if !strings.HasPrefix(strings.TrimSpace(string(p)), "{") {
				t.Fatalf("accepted a PDU that is not an object: %s", p)
			}
		}
	})
}

func TestParseTransactionLimits(t *testing.T) {
	ok := `{"origin":"a.test","pdus":[` + strings.TrimSuffix(strings.Repeat(`{},`, 50), ",") + `]}`
	if _, err := parseTransaction([]byte(ok)); err != nil {
		t.Fatalf("50 PDUs: %v", err)
	}
	tooMany := `{"origin":"a.test","pdus":[` + strings.TrimSuffix(strings.Repeat(`{},`, 51), ",") + `]}`
	if _, err := parseTransaction([]byte(tooMany)); err == nil || !strings.Contains(err.Error(), "M_BAD_JSON") {
		t.Fatalf("51 PDUs: %v", err)
	}
	edus := `{"origin":"a.test","pdus":[],"edus":[` + strings.TrimSuffix(strings.Repeat(`{"edu_type":"x"},`, 101), ",") + `]}`
	if _, err := parseTransaction([]byte(edus)); err == nil {
		t.Fatal("101 EDUs accepted")
	}
}
