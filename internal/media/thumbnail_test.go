package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"testing"
	"time"
)

func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x * 255 / max(1, w)), uint8(y * 255 / max(1, h)), 128, 255})
		}
	}
	return img
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(t testing.TB, img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func animatedGIF(t testing.TB, w, h, frames int) []byte {
	g := &gif.GIF{}
	pal := color.Palette{color.Black, color.White, color.RGBA{255, 0, 0, 255}}
	for i := range frames {
		f := image.NewPaletted(image.Rect(0, 0, w, h), pal)
		for x := range w {
			f.SetColorIndex(x, (x+i)%h, uint8(1+i%2))
		}
		g.Image = append(g.Image, f)
		g.Delay = append(g.Delay, 5)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func decodeSize(t *testing.T, data []byte) (int, int, string) {
	t.Helper()
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Width, cfg.Height, format
}

func TestThumbGeometry(t *testing.T) {
	for _, c := range []struct {
		sw, sh, w, h   int
		method         string
		dw, dh, cw, ch int
		scale          bool
	}{
		{4000, 3000, 320, 240, "scale", 320, 240, 320, 240, true},
		{4000, 2000, 320, 240, "scale", 480, 240, 480, 240, true}, // never smaller than asked
		{4000, 2000, 96, 96, "crop", 192, 96, 96, 96, true},
		{100, 50, 320, 240, "scale", 100, 50, 100, 50, false}, // never upscaled
		{1000, 10, 96, 96, "crop", 1000, 10, 1000, 10, false},
	} {
		dw, dh, cw, ch, scale := thumbGeometry(c.sw, c.sh, c.w, c.h, c.method)
		if dw != c.dw || dh != c.dh || cw != c.cw || ch != c.ch || scale != c.scale {
			t.Errorf("%+v: got %d %d %d %d %v", c, dw, dh, cw, ch, scale)
		}
	}
	if w, h := ThumbnailSize(50, 50, "crop"); w != 96 || h != 96 {
		t.Errorf("snap: %d %d", w, h)
	}
	if w, h := ThumbnailSize(1000, 700, "scale"); w != 1000 || h != 700 {
		t.Errorf("large: %d %d", w, h)
	}
}

func TestMakeThumbnail(t *testing.T) {
	jpg := encodeJPEG(t, testImage(1200, 800))
	out, ct, err := makeThumbnail(jpg, "image/jpeg", 320, 240, "scale", false)
	if err != nil || ct != "image/jpeg" {
		t.Fatal(err, ct)
	}
	if w, h, f := decodeSize(t, out); w != 360 || h != 240 || f != "jpeg" {
		t.Fatalf("scale: %dx%d %s", w, h, f)
	}
	out, _, err = makeThumbnail(jpg, "image/jpeg", 96, 96, "crop", false)
	if err != nil {
		t.Fatal(err)
	}
	if w, h, _ := decodeSize(t, out); w != 96 || h != 96 {
		t.Fatalf("crop: %dx%d", w, h)
	}
	pngData := encodePNG(t, testImage(500, 500))
	out, ct, err = makeThumbnail(pngData, "image/png", 32, 32, "crop", false)
	if err != nil || ct != "image/png" {
		t.Fatal(err)
	}
	if w, h, _ := decodeSize(t, out); w != 32 || h != 32 {
		t.Fatalf("png crop: %dx%d", w, h)
	}
	// Smaller than asked: the original.
	if out, _, err := makeThumbnail(pngData, "image/png", 800, 600, "scale", false); err != nil || out != nil {
		t.Fatalf("small original: %v %d", err, len(out))
	}
	// GIF: first frame as PNG unless animation is asked for.
	g := animatedGIF(t, 400, 300, 4)
	out, ct, err = makeThumbnail(g, "image/gif", 96, 96, "crop", false)
	if err != nil || ct != "image/png" {
		t.Fatal(err, ct)
	}
	if w, h, f := decodeSize(t, out); w != 96 || h != 96 || f != "png" {
		t.Fatalf("gif still: %dx%d %s", w, h, f)
	}
	out, ct, err = makeThumbnail(g, "image/gif", 96, 96, "crop", true)
	if err != nil || ct != "image/gif" {
		t.Fatal(err, ct)
	}
	if a, err := gif.DecodeAll(bytes.NewReader(out)); err != nil || len(a.Image) != 4 || a.Config.Width != 96 {
		t.Fatalf("animated thumbnail: %v", err)
	}
	// A small animated GIF is still not served animated when not asked.
	small := animatedGIF(t, 20, 20, 3)
	if out, ct, err := makeThumbnail(small, "image/gif", 96, 96, "crop", false); err != nil || out == nil || ct != "image/png" {
		t.Fatalf("small animated gif, animated=false: %v %q", err, ct)
	}
	if out, _, err := makeThumbnail(small, "image/gif", 96, 96, "crop", true); err != nil || out != nil {
		t.Fatalf("small animated gif, animated=true: %v", err)
	}
	// Garbage.
	if _, _, err := makeThumbnail([]byte("not an image"), "image/png", 32, 32, "crop", false); !errors.Is(err, errNotImage) {
		t.Fatalf("garbage: %v", err)
	}
}

// A decompression bomb is refused from its header, before decoding.
func TestThumbnailBombRefused(t *testing.T) {
	// A PNG whose header claims 20000×20000 (what a small, highly
	// compressed bomb looks like from its header).
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := []byte("IHDR\x00\x00\x4e\x20\x00\x00\x4e\x20\x08\x00\x00\x00\x00")
	_ = binary.Write(&b, binary.BigEndian, uint32(len(ihdr)-4))
	b.Write(ihdr)
	_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(ihdr))
	b.WriteString("\x00\x00\x00\x00IEND\xaeB`\x82")
	start := time.Now()
	_, _, err := makeThumbnail(b.Bytes(), "image/png", 32, 32, "crop", false)
	if !errors.Is(err, errTooManyPixels) {
		t.Fatalf("bomb: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("refusing took %v: the image was decoded", d)
	}
}

func TestThumbnailCachedAndEncrypted(t *testing.T) {
	forEachEngine(t, nil, func(t *testing.T, fx fixture) {
		ctx := context.Background()
		uri, err := fx.svc.Upload(ctx, Upload{UserID: "@a:media.test", ContentType: "image/jpeg", ContentLength: -1},
			bytes.NewReader(encodeJPEG(t, testImage(1000, 1000))))
		if err != nil {
			t.Fatal(err)
		}
		c, err := fx.svc.Get(ctx, "media.test", mediaID(t, uri), 0)
		if err != nil {
			t.Fatal(err)
		}
		th, err := fx.svc.Thumbnail(ctx, c, 90, 90, "crop", false)
		if err != nil {
			t.Fatal(err)
		}
		if th.ContentType != "image/jpeg" || th == c {
			t.Fatalf("thumbnail %+v", th)
		}
		rc, err := fx.svc.Open(ctx, th, 0, th.Size)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(rc)
		rc.Close()
		if w, h, _ := decodeSize(t, buf.Bytes()); w != 96 || h != 96 {
			t.Fatalf("thumbnail %dx%d", w, h)
		}
		if n := len(blobFiles(t, fx.dir)); n != 2 {
			t.Fatalf("%d blobs", n)
		}
		// Cached: the same request (snapped to the same size) makes no new blob.
		th2, err := fx.svc.Thumbnail(ctx, c, 96, 96, "crop", false)
		if err != nil || th2.ETag != th.ETag {
			t.Fatal(err)
		}
		if n := len(blobFiles(t, fx.dir)); n != 2 {
			t.Fatalf("%d blobs after a cached request", n)
		}
		// Not an image: 400 M_UNKNOWN.
		uri, _ = fx.svc.Upload(ctx, Upload{UserID: "@a:media.test", ContentType: "application/pdf", ContentLength: -1}, bytes.NewReader([]byte("%PDF")))
		pdf, _ := fx.svc.Get(ctx, "media.test", mediaID(t, uri), 0)
		_, err = fx.svc.Thumbnail(ctx, pdf, 96, 96, "crop", false)
		wantCode(t, err, "M_UNKNOWN", 400)
		// Claims to be an image, is not: 400, not 500.
		uri, _ = fx.svc.Upload(ctx, Upload{UserID: "@a:media.test", ContentType: "image/png", ContentLength: -1}, bytes.NewReader([]byte("<html>")))
		fake, _ := fx.svc.Get(ctx, "media.test", mediaID(t, uri), 0)
		_, err = fx.svc.Thumbnail(ctx, fake, 96, 96, "crop", false)
		wantCode(t, err, "M_UNKNOWN", 400)
	})
}

// FuzzThumbnail: any bytes, any size, any type: no panic, and an error or
// a decodable image.
func FuzzThumbnail(f *testing.F) {
	f.Add(encodeJPEG(f, testImage(64, 48)), 32, 32, true, false)
	f.Add(encodePNG(f, testImage(50, 70)), 40, 10, false, false)
	f.Add(animatedGIF(f, 60, 40, 3), 20, 20, true, true)
	f.Add([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), 1, 1, false, true)
	// Large images are only slow, not interesting: keep executions fast.
	maxPixels = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte, w, h int, crop, animated bool) {
		if w < 1 || h < 1 || w > 2000 || h > 2000 {
			return
		}
		method := "scale"
		if crop {
			method = "crop"
		}
		for _, ct := range []string{"image/png", "image/gif"} {
			out, _, err := makeThumbnail(data, ct, w, h, method, animated)
			if err == nil && out != nil {
				if _, _, err := image.Decode(bytes.NewReader(out)); err != nil {
					t.Fatalf("thumbnail does not decode: %v", err)
				}
			}
		}
	})
}

// BenchmarkThumbnail12MP thumbnails a 4000×3000 JPEG to 320×240 (decode,
// scale, encode), the work of a first thumbnail request for a phone photo.
func BenchmarkThumbnail12MP(b *testing.B) {
	img := image.NewYCbCr(image.Rect(0, 0, 4000, 3000), image.YCbCrSubsampleRatio420)
	for i := range img.Y {
		img.Y[i] = uint8(i*7 + i/4000)
	}
	for i := range img.Cb {
		img.Cb[i], img.Cr[i] = uint8(i), uint8(i/2000)
	}
	src := encodeJPEG(b, img)
	b.SetBytes(int64(len(src)))
	b.ResetTimer()
	for range b.N {
		out, _, err := makeThumbnail(src, "image/jpeg", 320, 240, "scale", false)
		if err != nil || out == nil {
			b.Fatal(err)
		}
	}
}
