package media

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// memStore is a BlobStore in memory, for tests of the sealed format.
type memStore struct{ m map[string][]byte }

func (s *memStore) Put(_ context.Context, name string, r io.Reader) (int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	s.m[name] = b
	return int64(len(b)), nil
}

func (s *memStore) Get(_ context.Context, name string, off, n int64) (io.ReadCloser, error) {
	b, ok := s.m[name]
	if !ok {
		return nil, ErrBlobNotFound
	}
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	end := int64(len(b))
	if n >= 0 && off+n < end {
		end = off + n
	}
	return io.NopCloser(bytes.NewReader(b[off:end])), nil
}

func (s *memStore) Delete(_ context.Context, name string) error { delete(s.m, name); return nil }

func (s *memStore) Stat(_ context.Context, name string) (int64, error) {
	b, ok := s.m[name]
	if !ok {
		return 0, ErrBlobNotFound
	}
	return int64(len(b)), nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func sealBytes(t *testing.T, plain []byte) ([]byte, []byte) {
	t.Helper()
	key := newFileKey()
	var buf bytes.Buffer
	n, err := seal(&buf, bytes.NewReader(plain), key)
	if err != nil || n != int64(len(plain)) {
		t.Fatalf("seal: %d %v", n, err)
	}
	if int64(buf.Len()) != SealedSize(int64(len(plain))) {
		t.Fatalf("sealed size %d, want %d", buf.Len(), SealedSize(int64(len(plain))))
	}
	return buf.Bytes(), key
}

func readRange(t *testing.T, bs BlobStore, key []byte, size, off, n int64) ([]byte, error) {
	t.Helper()
	rc, err := openSealed(context.Background(), bs, "b", key, size, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestSealRoundTripAndRanges(t *testing.T) {
	for _, size := range []int{0, 1, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 17} {
		plain := randBytes(size)
		sealed, key := sealBytes(t, plain)
		bs := &memStore{m: map[string][]byte{"b": sealed}}
		got, err := readRange(t, bs, key, int64(size), 0, int64(size))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("size %d: whole read: %v (%d bytes)", size, err, len(got))
		}
		if size == 0 {
			continue
		}
		for _, r := range [][2]int{{0, 1}, {size - 1, 1}, {size / 2, size - size/2}, {chunkSize - 1, 2}, {1, size - 2}} {
			off, n := r[0], r[1]
			if off < 0 || n <= 0 || off+n > size {
				continue
			}
			got, err := readRange(t, bs, key, int64(size), int64(off), int64(n))
			if err != nil || !bytes.Equal(got, plain[off:off+n]) {
				t.Fatalf("size %d range %d+%d: %v", size, off, n, err)
			}
		}
	}
}

func TestSealedRangeReadsOnlyNeededChunks(t *testing.T) {
	start, length, first := sealedRange(5*chunkSize+10, 100)
	if first != 5 || start != headerSize+5*sealedChunk || length != sealedChunk {
		t.Fatalf("%d %d %d", start, length, first)
	}
	_, length, _ = sealedRange(chunkSize-1, 2)
	if length != 2*sealedChunk {
		t.Fatalf("straddling range: %d", length)
	}
}

// Every kind of damage is an authentication failure, never plaintext.
func TestTamperDetected(t *testing.T) {
	size := 3*chunkSize + 100
	plain := randBytes(size)
	sealed, key := sealBytes(t, plain)
	cases := map[string]func([]byte) ([]byte, int64){
		"flip first chunk": func(b []byte) ([]byte, int64) { b[headerSize+10] ^= 1; return b, int64(size) },
		"flip last chunk":  func(b []byte) ([]byte, int64) { b[len(b)-1] ^= 0x80; return b, int64(size) },
		"flip nonce":       func(b []byte) ([]byte, int64) { b[5] ^= 1; return b, int64(size) },
		"flip magic":       func(b []byte) ([]byte, int64) { b[0] = 'X'; return b, int64(size) },
		"truncate at chunk boundary": func(b []byte) ([]byte, int64) {
			return b[:headerSize+2*sealedChunk], int64(size)
		},
		"truncate and claim shorter size": func(b []byte) ([]byte, int64) {
			return b[:headerSize+2*sealedChunk], 2 * chunkSize
		},
		"swap chunks": func(b []byte) ([]byte, int64) {
			c0 := append([]byte(nil), b[headerSize:headerSize+sealedChunk]...)
			copy(b[headerSize:], b[headerSize+sealedChunk:headerSize+2*sealedChunk])
			copy(b[headerSize+sealedChunk:], c0)
			return b, int64(size)
		},
		"append a chunk, claim it": func(b []byte) ([]byte, int64) {
			return append(b, b[headerSize:headerSize+sealedChunk]...), int64(size) + chunkSize
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			b, claimed := damage(append([]byte(nil), sealed...))
			bs := &memStore{m: map[string][]byte{"b": b}}
			got, err := readRange(t, bs, key, claimed, 0, claimed)
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("got %d bytes, err %v; want ErrTampered", len(got), err)
			}
		})
	}
	// The wrong key fails too.
	bs := &memStore{m: map[string][]byte{"b": sealed}}
	if _, err := readRange(t, bs, newFileKey(), int64(size), 0, int64(size)); !errors.Is(err, ErrTampered) {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestKeyringWrapAndFile(t *testing.T) {
	t.Setenv(KeyEnv, "")
	dir := t.TempDir()
	k, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	fk := newFileKey()
	w, id, err := k.wrap(fk, "local/a")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadKeyring(dir) // same file, same key
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.unwrap(w, id, "local/a"); err != nil || !bytes.Equal(got, fk) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := k2.unwrap(w, id, "local/b"); !errors.Is(err, ErrTampered) {
		t.Fatalf("wrapped key moved to another blob: %v", err)
	}
	if _, err := NewKeyring(newFileKey()).unwrap(w, id, "local/a"); !errors.Is(err, ErrTampered) {
		t.Fatalf("unknown master key: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, KeyFileName), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyring(dir); err == nil {
		t.Fatal("a world-readable key file was accepted")
	}
}

func TestKeyringFromEnv(t *testing.T) {
	t.Setenv(KeyEnv, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	dir := t.TempDir()
	k, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFileName)); !os.IsNotExist(err) {
		t.Fatal("key file written although the key came from the environment")
	}
	if k.CurrentID() == "" {
		t.Fatal("no key id")
	}
	t.Setenv(KeyEnv, "short")
	if _, err := LoadKeyring(dir); err == nil {
		t.Fatal("bad key accepted")
	}
}

func TestFSBlobStore(t *testing.T) {
	bs, err := NewFSBlobStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testBlobStore(t, bs)
}

// testBlobStore is the contract every BlobStore passes.
func testBlobStore(t *testing.T, bs BlobStore) {
	ctx := context.Background()
	data := randBytes(100_000)
	if n, err := bs.Put(ctx, "local/ab/cd/x1", bytes.NewReader(data)); err != nil || n != int64(len(data)) {
		t.Fatalf("put: %d %v", n, err)
	}
	if n, err := bs.Stat(ctx, "local/ab/cd/x1"); err != nil || n != int64(len(data)) {
		t.Fatalf("stat: %d %v", n, err)
	}
	for _, r := range [][2]int64{{0, -1}, {0, 10}, {99_990, 100}, {50_000, 1}} {
		rc, err := bs.Get(ctx, "local/ab/cd/x1", r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		end := int64(len(data))
		if r[1] >= 0 {
			end = min(end, r[0]+r[1])
		}
		if !bytes.Equal(got, data[r[0]:end]) {
			t.Fatalf("get %v: %d bytes", r, len(got))
		}
	}
	// A failing reader leaves no blob behind.
	if _, err := bs.Put(ctx, "local/ab/cd/x2", io.MultiReader(bytes.NewReader(data), iotestErr{})); err == nil {
		t.Fatal("put with a failing reader succeeded")
	}
	if _, err := bs.Stat(ctx, "local/ab/cd/x2"); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("half-written blob visible: %v", err)
	}
	if err := bs.Delete(ctx, "local/ab/cd/x1"); err != nil {
		t.Fatal(err)
	}
	if err := bs.Delete(ctx, "local/ab/cd/x1"); err != nil {
		t.Fatalf("deleting a missing blob: %v", err)
	}
	if _, err := bs.Get(ctx, "local/ab/cd/x1", 0, -1); !errors.Is(err, ErrBlobNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	for _, bad := range []string{"../x", "a/../../x", "/abs", "a//b", "a/./b", "", "a\\b"} {
		if _, err := bs.Put(ctx, bad, bytes.NewReader(nil)); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("boom") }

// BenchmarkSeal and BenchmarkOpen measure the sealed format alone (compare
// with `openssl speed -evp aes-256-gcm`).
func BenchmarkSeal(b *testing.B) {
	data := make([]byte, 64<<20)
	key := newFileKey()
	b.SetBytes(int64(len(data)))
	for range b.N {
		if _, err := seal(io.Discard, bytes.NewReader(data), key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	data := make([]byte, 64<<20)
	key := newFileKey()
	var buf bytes.Buffer
	if _, err := seal(&buf, bytes.NewReader(data), key); err != nil {
		b.Fatal(err)
	}
	bs := &memStore{m: map[string][]byte{"b": buf.Bytes()}}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		rc, err := openSealed(context.Background(), bs, "b", key, int64(len(data)), 0, int64(len(data)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}
