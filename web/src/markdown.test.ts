import { describe, expect, it } from "vitest";
import { renderMarkdown, sanitiseHtml } from "./markdown.ts";

describe("renderMarkdown", () => {
  it("sends plain text as plain text", () => {
    expect(renderMarkdown("hello world")).toBeNull();
    expect(renderMarkdown("two\nlines")).toBeNull();
    expect(renderMarkdown("a < b & c > d")).toBeNull();
    expect(renderMarkdown("  padded  ")).toBeNull();
  });
  it("formats emphasis, code, links and lists", () => {
    expect(renderMarkdown("**bold** and _it_")).toBe("<p><strong>bold</strong> and <em>it</em></p>");
    expect(renderMarkdown("use `go test`")).toBe("<p>use <code>go test</code></p>");
    expect(renderMarkdown("[spec](https://spec.matrix.org)")).toBe(
      '<p><a href="https://spec.matrix.org" target="_blank" rel="noreferrer noopener">spec</a></p>',
    );
    expect(renderMarkdown("- one\n- two")).toBe("<ul>\n<li>one</li>\n<li>two</li>\n</ul>");
    expect(renderMarkdown("```go\nx := 1\n```")).toBe('<pre><code class="language-go">x := 1\n</code></pre>');
  });
  it("never lets typed HTML run", () => {
    const html = renderMarkdown("**hi** <img src=x onerror=alert(1)><script>alert(2)</script>")!;
    expect(html).not.toMatch(/onerror|<script|<img/);
    expect(renderMarkdown("[x](javascript:alert(1))") ?? "").not.toContain("javascript:");
  });
});

describe("sanitiseHtml", () => {
  it("keeps the Matrix subset", () => {
    const ok = '<p><strong>a</strong> <em>b</em> <del>c</del> <code>d</code></p><blockquote>q</blockquote><ol start="3"><li>x</li></ol>';
    expect(sanitiseHtml(ok)).toBe(ok);
    expect(sanitiseHtml('<font data-mx-color="#ff0000">red</font>')).toBe('<font data-mx-color="#ff0000">red</font>');
  });
  it("drops scripts, handlers, styles, iframes, images and bad URLs", () => {
    expect(sanitiseHtml('<b onclick="x()">a</b><script>alert(1)</script>')).toBe("<b>a</b>");
    expect(sanitiseHtml('<span style="position:fixed">s</span>')).toBe("<span>s</span>");
    expect(sanitiseHtml('<iframe src="https://evil.example"></iframe>t')).toBe("t");
    expect(sanitiseHtml('<img src="https://tracker.example/p.gif">')).toBe("");
    expect(sanitiseHtml('<a href="javascript:alert(1)">x</a>')).toBe("<a>x</a>");
    expect(sanitiseHtml('<a href="data:text/html,hi">x</a>')).toBe("<a>x</a>");
    expect(sanitiseHtml('<font data-mx-color="red;background:url(x)">c</font>')).toBe("<font>c</font>");
    expect(sanitiseHtml('<p class="evil">p</p><code class="language-js">c</code>')).toBe('<p>p</p><code class="language-js">c</code>');
  });
  it("opens links in a new tab without a referrer", () => {
    expect(sanitiseHtml('<a href="https://example.org/">e</a>')).toBe(
      '<a href="https://example.org/" target="_blank" rel="noreferrer noopener">e</a>',
    );
  });
  it("drops reply fallbacks", () => {
    expect(sanitiseHtml("<mx-reply><blockquote>old</blockquote></mx-reply>new")).toBe("new");
  });
});
