package media

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// The sealed blob format (version 1):
//
//	header:  "LXM1" ‖ nonce prefix (8 random bytes)
//	chunks:  AES-256-GCM(file key, nonce = prefix ‖ uint32 BE chunk index,
//	                     aad = "LXM1" ‖ last-chunk flag (0 or 1),
//	                     64 KiB of plaintext; the last chunk may be shorter)
//
// Every blob has at least one chunk (an empty file is one empty final
// chunk). The chunk index in the nonce makes reordering fail; the flag in
// the additional data makes truncation at a chunk boundary, and appending,
// fail. Each file has its own random key, so chunks cannot be moved between
// files either. A range of plaintext maps to a range of whole chunks, which
// is all a range read fetches and decrypts.
const (
	chunkSize   = 64 << 10
	tagSize     = 16
	headerSize  = 4 + 8
	sealedChunk = chunkSize + tagSize
	fileKeySize = 32
)

var magic = [4]byte{'L', 'X', 'M', '1'}

// ErrTampered is returned when a blob fails authentication: it was changed,
// truncated, or does not belong to the key that unwraps it. Nothing of such
// a blob is ever returned.
var ErrTampered = errors.New("media: blob failed authentication")

// SealedSize returns the size of the sealed blob of n plaintext bytes.
func SealedSize(n int64) int64 { return headerSize + n + numChunks(n)*tagSize }

func numChunks(n int64) int64 {
	if n == 0 {
		return 1
	}
	return (n + chunkSize - 1) / chunkSize
}

func newFileKey() []byte {
	k := make([]byte, fileKeySize)
	if _, err := rand.Read(k); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return k
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func chunkNonce(prefix []byte, i uint32) []byte {
	n := make([]byte, 12)
	copy(n, prefix)
	binary.BigEndian.PutUint32(n[8:], i)
	return n
}

var (
	aadMiddle = []byte{'L', 'X', 'M', '1', 0}
	aadLast   = []byte{'L', 'X', 'M', '1', 1}
)

func chunkAAD(last bool) []byte {
	if last {
		return aadLast
	}
	return aadMiddle
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, sealedChunk); return &b }}

// seal reads r to its end and writes the sealed blob to w, one chunk at a
// time (memory stays at one chunk whatever the size). It returns the number
// of plaintext bytes read.
func seal(w io.Writer, r io.Reader, key []byte) (int64, error) {
	aead, err := newGCM(key)
	if err != nil {
		return 0, err
	}
	var hdr [headerSize]byte
	copy(hdr[:], magic[:])
	if _, err := rand.Read(hdr[4:]); err != nil {
		return 0, err
	}
	if _, err := w.Write(hdr[:]); err != nil {
		return 0, err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var peek [1]byte
	havePeek := false
	var total int64
	for i := uint64(0); ; i++ {
		if i > 0xFFFFFFFF {
			return total, errors.New("media: blob too large for the sealed format")
		}
		start := 0
		if havePeek {
			buf[0] = peek[0]
			start = 1
		}
		n, err := io.ReadFull(r, buf[start:chunkSize])
		n += start
		last := false
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			last = true
		case err != nil:
			return total, err
		default:
			m, perr := io.ReadFull(r, peek[:])
			havePeek = m == 1
			if m == 0 {
				if !errors.Is(perr, io.EOF) {
					return total, perr
				}
				last = true
			}
		}
		out := aead.Seal(buf[:0], chunkNonce(hdr[4:], uint32(i)), buf[:n], chunkAAD(last))
		if _, err := w.Write(out); err != nil {
			return total, err
		}
		total += int64(n)
		if last {
			return total, nil
		}
	}
}

// sealedRange returns the byte range of the sealed blob holding plaintext
// [off, off+n) of a blob of size plaintext bytes, and the first chunk's
// index. n > 0 and off+n <= size.
func sealedRange(off, n int64) (start, length, first int64) {
	first = off / chunkSize
	last := (off + n - 1) / chunkSize
	start = headerSize + first*sealedChunk
	return start, (last - first + 1) * sealedChunk, first
}

// opener decrypts plaintext [off, off+n) of a sealed blob from src, which
// yields the sealed bytes from the first needed chunk on. It returns
// ErrTampered as soon as a chunk fails authentication or is short; no byte
// of a chunk is returned before its tag has been checked.
type opener struct {
	src       io.Reader
	aead      cipher.AEAD
	prefix    []byte
	idx       int64 // next chunk to read
	lastIdx   int64 // index of the blob's final chunk
	size      int64 // plaintext size of the blob
	skip      int   // bytes to drop from the next chunk
	remaining int64 // plaintext bytes still to return
	buf       []byte
	pending   []byte
	bp        *[]byte
	err       error
}

// newOpener reads nothing yet. header is the blob's first headerSize bytes.
func newOpener(src io.Reader, key, header []byte, size, off, n int64) (*opener, error) {
	if len(header) != headerSize || [4]byte(header[:4]) != magic {
		return nil, ErrTampered
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	bp := bufPool.Get().(*[]byte)
	return &opener{
		src: src, aead: aead, prefix: append([]byte(nil), header[4:]...),
		idx: off / chunkSize, lastIdx: numChunks(size) - 1, size: size,
		skip: int(off % chunkSize), remaining: n, buf: *bp, bp: bp,
	}, nil
}

func (o *opener) Read(p []byte) (int, error) {
	for len(o.pending) == 0 {
		if o.err != nil {
			return 0, o.err
		}
		if o.remaining == 0 {
			o.err = io.EOF
			return 0, io.EOF
		}
		o.err = o.next()
	}
	n := copy(p, o.pending)
	o.pending = o.pending[n:]
	return n, nil
}

func (o *opener) next() error {
	if o.idx > o.lastIdx {
		return ErrTampered
	}
	plain := int64(chunkSize)
	if o.idx == o.lastIdx {
		plain = o.size - o.lastIdx*chunkSize
	}
	sealed := o.buf[:plain+tagSize]
	if _, err := io.ReadFull(o.src, sealed); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ErrTampered
		}
		return fmt.Errorf("read blob: %w", err)
	}
	out, err := o.aead.Open(sealed[:0], chunkNonce(o.prefix, uint32(o.idx)), sealed, chunkAAD(o.idx == o.lastIdx))
	if err != nil {
		return ErrTampered
	}
	o.idx++
	if o.skip > 0 {
		if o.skip > len(out) {
			return ErrTampered
		}
		out = out[o.skip:]
		o.skip = 0
	}
	if int64(len(out)) > o.remaining {
		out = out[:o.remaining]
	}
	o.remaining -= int64(len(out))
	o.pending = out
	return nil
}

func (o *opener) release() {
	if o.bp != nil {
		bufPool.Put(o.bp)
		o.bp, o.buf = nil, nil
	}
}
