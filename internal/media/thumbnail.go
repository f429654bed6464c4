package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	stddraw "image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"strconv"
	"strings"

	xdraw "golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // registers WebP decoding

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// MaxThumbnailPixels is the largest image (width × height, all frames for
// an animation) the thumbnailer decodes; larger ones are refused from
// their header alone, so a decompression bomb costs nothing.
const MaxThumbnailPixels = 50_000_000

// maxPixels is MaxThumbnailPixels, lowered by the fuzz test.
var maxPixels int64 = MaxThumbnailPixels

// maxThumbnailSource bounds the size of a file read into memory to be
// thumbnailed.
const maxThumbnailSource = 64 << 20

var (
	errTooManyPixels = errors.New("image too large to thumbnail")
	errNotImage      = errors.New("content cannot be thumbnailed")
)

// thumbnailable is what the thumbnailer decodes.
var thumbnailable = map[string]bool{"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true}

func baseType(ct string) string {
	t, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// standardSizes are the sizes the spec asks servers to produce; requests
// are rounded up to one of them so that the cache holds a few sizes per
// image, whatever clients ask for.
var standardSizes = []struct {
	w, h   int
	method string
}{
	{32, 32, "crop"}, {96, 96, "crop"}, {320, 240, "scale"}, {640, 480, "scale"}, {800, 600, "scale"},
}

// maxThumbnailSide bounds requested dimensions.
const maxThumbnailSide = 4096

// ThumbnailSize picks the size to generate for a request: the smallest
// standard size of the method that is at least as large, else the request
// itself rounded up to a multiple of 100 (at most 4096).
func ThumbnailSize(w, h int, method string) (int, int) {
	for _, s := range standardSizes {
		if s.method == method && s.w >= w && s.h >= h {
			return s.w, s.h
		}
	}
	round := func(v int) int { return min(maxThumbnailSide, (v+99)/100*100) }
	return round(w), round(h)
}

// Thumbnail returns a thumbnail of c at least w×h (method "crop" or
// "scale"), generating and caching it on first use; or c itself when the
// original is no larger than asked (the spec: never upscale).
func (s *Service) Thumbnail(ctx context.Context, c *Content, w, h int, method string, animated bool) (*Content, error) {
	if w < 1 || h < 1 || w > 1<<20 || h > 1<<20 {
		return nil, errcode.Unknown("width and height must be positive integers")
	}
	if method != "crop" && method != "scale" {
		return nil, errcode.Unknown("method must be crop or scale")
	}
	if !thumbnailable[baseType(c.ContentType)] {
		return nil, errcode.Unknown("this content type cannot be thumbnailed")
	}
	if c.Size > maxThumbnailSource {
		return nil, errcode.TooLarge("content is too large to thumbnail")
	}
	w, h = ThumbnailSize(w, h, method)
	animated = animated && baseType(c.ContentType) == "image/gif"
	if t, err := s.cachedThumbnail(ctx, c, w, h, method, animated); err != nil || t != nil {
		return t, err
	}
	key := fmt.Sprintf("%s/%dx%d/%s/%v", c.MediaID, w, h, method, animated)
	v, err, _ := s.thumbs.Do(key, func() (any, error) {
		if t, err := s.cachedThumbnail(ctx, c, w, h, method, animated); err != nil || t != nil {
			return t, err
		}
		select {
		case s.thumbSem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { <-s.thumbSem }()
		return s.generateThumbnail(ctx, c, w, h, method, animated)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Content), nil
}

func (s *Service) cachedThumbnail(ctx context.Context, c *Content, w, h int, method string, animated bool) (*Content, error) {
	t, err := s.st.GetThumbnail(ctx, c.MediaID, w, h, method, animated)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if t.Blob == "" { // the original is served for this size
		return c, nil
	}
	return s.thumbContent(c, t)
}

func (s *Service) thumbContent(c *Content, t *store.Thumbnail) (*Content, error) {
	key, err := s.keys.unwrap(t.WrappedKey, t.KeyID, t.Blob)
	if err != nil {
		s.log.Error("thumbnail key failed authentication", "media_id", c.MediaID, "blob", t.Blob, "err", err)
		return nil, errIntegrity()
	}
	anim := ""
	if t.Animated {
		anim = "-a"
	}
	return &Content{MediaID: c.MediaID, ContentType: t.ContentType, FileName: c.FileName, Size: t.Size,
		ETag:            fmt.Sprintf(`"%s-%dx%d-%s%s"`, c.MediaID, t.Width, t.Height, t.Method, anim),
		Unauthenticated: c.Unauthenticated, blob: t.Blob, key: key}, nil
}

func (s *Service) generateThumbnail(ctx context.Context, c *Content, w, h int, method string, animated bool) (*Content, error) {
	src, err := s.readAll(ctx, c)
	if err != nil {
		return nil, err
	}
	out, outType, err := makeThumbnail(src, baseType(c.ContentType), w, h, method, animated)
	switch {
	case errors.Is(err, errTooManyPixels):
		return nil, errcode.TooLarge("image is too large to thumbnail")
	case err != nil:
		return nil, errcode.Unknown("cannot thumbnail this content: %v", err)
	}
	t := store.Thumbnail{MediaID: c.MediaID, Width: w, Height: h, Method: method, Animated: animated, CreatedTS: s.now().UnixMilli()}
	if out == nil {
		// The original is small enough: remember that, store nothing.
		t.ContentType = c.ContentType
		err := s.st.InTx(ctx, func(tx *store.Tx) error { return tx.InsertThumbnail(ctx, t) })
		if err != nil && !errors.Is(err, store.ErrExists) {
			return nil, err
		}
		return c, nil
	}
	t.ContentType, t.Size = outType, int64(len(out))
	t.Blob = fmt.Sprintf("thumb/%s/%s/%dx%d-%s.%s", shard(c.MediaID), c.MediaID, w, h, method, randSuffix())
	_, key, err := s.putSealed(ctx, t.Blob, bytes.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("store thumbnail: %w", err)
	}
	if t.WrappedKey, t.KeyID, err = s.keys.wrap(key, t.Blob); err != nil {
		return nil, err
	}
	err = s.st.InTx(ctx, func(tx *store.Tx) error { return tx.InsertThumbnail(ctx, t) })
	if errors.Is(err, store.ErrExists) {
		// Another process made it first: use theirs.
		_ = s.blobs.Delete(context.WithoutCancel(ctx), t.Blob)
		if tc, err := s.cachedThumbnail(ctx, c, w, h, method, animated); err != nil || tc != nil {
			return tc, err
		}
		return nil, errors.New("thumbnail vanished")
	}
	if err != nil {
		_ = s.blobs.Delete(context.WithoutCancel(ctx), t.Blob)
		return nil, err
	}
	return s.thumbContent(c, &t)
}

// makeThumbnail decodes an image and returns its thumbnail, encoded, and
// the thumbnail's content type; or nil output when the original should be
// served as it is (no larger than asked). It reads the image header first
// and refuses images over MaxThumbnailPixels before decoding them.
func makeThumbnail(src []byte, ct string, w, h int, method string, animated bool) ([]byte, string, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(src))
	if err != nil {
		return nil, "", errNotImage
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, "", errNotImage
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return nil, "", errTooManyPixels
	}
	sw, sh := cfg.Width, cfg.Height
	dw, dh, cw, ch, scaleNeeded := thumbGeometry(sw, sh, w, h, method)
	if format == "gif" {
		return gifThumbnail(src, sw, sh, dw, dh, cw, ch, scaleNeeded, animated)
	}
	if !scaleNeeded {
		return nil, "", nil
	}
	img, _, err := image.Decode(bytes.NewReader(src))
	if err != nil {
		return nil, "", errNotImage
	}
	if b := img.Bounds(); b.Dx() != sw || b.Dy() != sh {
		return nil, "", errNotImage
	}
	thumb := cropCenter(resize(img, dw, dh), cw, ch)
	var buf bytes.Buffer
	if format == "jpeg" {
		err = jpeg.Encode(&buf, thumb, &jpeg.Options{Quality: 85})
		return buf.Bytes(), "image/jpeg", err
	}
	err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, thumb)
	return buf.Bytes(), "image/png", err
}

// thumbGeometry returns the scaled size (dw×dh), the final size after a
// centred crop (cw×ch), and whether any scaling is needed. Both methods
// scale by one factor so that the result covers w×h ("scale" keeps the
// whole image, "crop" then cuts it to w×h): the spec's thumbnails are
// never smaller than asked, nor upscaled.
func thumbGeometry(sw, sh, w, h int, method string) (dw, dh, cw, ch int, scale bool) {
	fx, fy := float64(w)/float64(sw), float64(h)/float64(sh)
	f := max(fx, fy)
	if f >= 1 {
		return sw, sh, sw, sh, false
	}
	dw, dh = max(1, int(float64(sw)*f+0.999)), max(1, int(float64(sh)*f+0.999))
	dw, dh = min(dw, sw), min(dh, sh)
	cw, ch = dw, dh
	if method == "crop" {
		cw, ch = min(w, dw), min(h, dh)
	}
	return dw, dh, cw, ch, true
}

// resize scales img to dw×dh. Large reductions first average boxes of
// k×k pixels (fast, and it removes the detail a kernel over few source
// pixels would alias), then finish with Catmull-Rom.
func resize(img image.Image, dw, dh int) *image.RGBA {
	b := img.Bounds()
	var src image.Image = img
	if k := min(b.Dx()/(2*dw), b.Dy()/(2*dh)); k >= 2 {
		src = boxShrink(img, k)
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	xdraw.CatmullRom.Scale(dst, dst.Bounds(), src, src.Bounds(), xdraw.Src, nil)
	return dst
}

// boxShrink averages k×k blocks of premultiplied RGBA. It converts the
// image a band of rows at a time, so it never holds a full-size RGBA copy.
func boxShrink(img image.Image, k int) *image.RGBA {
	b := img.Bounds()
	ow, oh := b.Dx()/k, b.Dy()/k
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	band := image.NewRGBA(image.Rect(0, 0, b.Dx(), k))
	acc := make([]uint32, ow*4)
	n := uint32(k * k)
	for oy := range oh {
		stddraw.Draw(band, band.Bounds(), img, image.Pt(b.Min.X, b.Min.Y+oy*k), stddraw.Src)
		clear(acc)
		for y := range k {
			row := band.Pix[y*band.Stride:]
			for ox := range ow {
				p := row[ox*k*4:]
				a := acc[ox*4 : ox*4+4]
				for x := range k {
					q := p[x*4 : x*4+4]
					a[0] += uint32(q[0])
					a[1] += uint32(q[1])
					a[2] += uint32(q[2])
					a[3] += uint32(q[3])
				}
			}
		}
		o := out.Pix[oy*out.Stride:]
		for i, v := range acc {
			o[i] = uint8((v + n/2) / n)
		}
	}
	return out
}

func cropCenter(img *image.RGBA, cw, ch int) *image.RGBA {
	b := img.Bounds()
	if b.Dx() == cw && b.Dy() == ch {
		return img
	}
	x0, y0 := (b.Dx()-cw)/2, (b.Dy()-ch)/2
	return img.SubImage(image.Rect(x0, y0, x0+cw, y0+ch)).(*image.RGBA)
}

// gifThumbnail thumbnails a GIF: its first frame as a PNG, or every frame
// as a smaller GIF when animated is asked for. A small animated GIF is
// served as it is only when animation is wanted.
func gifThumbnail(src []byte, sw, sh, dw, dh, cw, ch int, scale, animated bool) ([]byte, string, error) {
	frames, pixels, err := gifFrames(src)
	if err != nil || frames == 0 {
		return nil, "", errNotImage
	}
	if pixels > maxPixels {
		// Too many frames to animate (known from the frame descriptors,
		// before any frame is inflated): a still of the first one will do.
		animated = false
	}
	if !scale && (animated || frames == 1) {
		return nil, "", nil
	}
	canvas := image.NewRGBA(image.Rect(0, 0, sw, sh))
	if !animated {
		first, err := gif.Decode(bytes.NewReader(src)) // the first frame only
		if err != nil {
			return nil, "", errNotImage
		}
		stddraw.Draw(canvas, first.Bounds(), first, first.Bounds().Min, stddraw.Over)
		thumb := canvas
		if scale {
			thumb = cropCenter(resize(canvas, dw, dh), cw, ch)
		}
		var buf bytes.Buffer
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, thumb)
		return buf.Bytes(), "image/png", err
	}
	g, err := gif.DecodeAll(bytes.NewReader(src))
	if err != nil || len(g.Image) == 0 {
		return nil, "", errNotImage
	}
	out := &gif.GIF{LoopCount: g.LoopCount, Config: image.Config{Width: cw, Height: ch}}
	pal := append(color.Palette{color.RGBA{}}, palette.Plan9[:255]...)
	prev := image.NewRGBA(canvas.Bounds())
	for i, f := range g.Image {
		disposal := byte(0)
		if i < len(g.Disposal) {
			disposal = g.Disposal[i]
		}
		if disposal == gif.DisposalPrevious {
			copy(prev.Pix, canvas.Pix)
		}
		stddraw.Draw(canvas, f.Bounds(), f, f.Bounds().Min, stddraw.Over)
		small := cropCenter(resize(canvas, dw, dh), cw, ch)
		pf := image.NewPaletted(image.Rect(0, 0, cw, ch), pal)
		stddraw.FloydSteinberg.Draw(pf, pf.Bounds(), small, small.Bounds().Min)
		out.Image = append(out.Image, pf)
		delay := 10
		if i < len(g.Delay) {
			delay = g.Delay[i]
		}
		out.Delay = append(out.Delay, delay)
		out.Disposal = append(out.Disposal, gif.DisposalNone)
		switch disposal {
		case gif.DisposalBackground:
			stddraw.Draw(canvas, f.Bounds(), image.Transparent, image.Point{}, stddraw.Src)
		case gif.DisposalPrevious:
			copy(canvas.Pix, prev.Pix)
		}
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, out); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), "image/gif", nil
}

// gifFrames walks a GIF's blocks without inflating any frame and returns
// the number of frames and their total area.
func gifFrames(b []byte) (frames int, pixels int64, err error) {
	bad := errors.New("malformed gif")
	if len(b) < 13 || string(b[:3]) != "GIF" {
		return 0, 0, bad
	}
	p := 13
	if b[10]&0x80 != 0 {
		p += 3 << (int(b[10]&7) + 1)
	}
	skipSubBlocks := func() bool {
		for p < len(b) {
			n := int(b[p])
			p++
			if n == 0 {
				return true
			}
			p += n
		}
		return false
	}
	for p < len(b) {
		switch b[p] {
		case 0x21: // extension: label, sub-blocks
			p += 2
			if !skipSubBlocks() {
				return frames, pixels, bad
			}
		case 0x2C: // image descriptor
			if p+10 > len(b) {
				return frames, pixels, bad
			}
			w, h := int64(b[p+5])|int64(b[p+6])<<8, int64(b[p+7])|int64(b[p+8])<<8
			flags := b[p+9]
			p += 10
			if flags&0x80 != 0 {
				p += 3 << (int(flags&7) + 1)
			}
			p++ // LZW minimum code size
			if !skipSubBlocks() {
				return frames, pixels, bad
			}
			frames++
			pixels += w * h
		case 0x3B: // trailer
			return frames, pixels, nil
		default:
			return frames, pixels, bad
		}
	}
	return frames, pixels, nil
}

// ParseDimension parses a width or height query parameter.
func ParseDimension(v string) (int, bool) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}
