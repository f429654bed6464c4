// Markdown for what the user types (body → formatted_body) and the HTML
// sanitiser for what others send (formatted_body → what we show). Both
// keep to the tags and attributes the Matrix spec suggests clients allow
// (client-server API, "m.room.message msgtypes": HTML subset).
import { marked } from "marked";
import DOMPurify from "dompurify";

const ALLOWED_TAGS = [
  "font", "del", "s", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup", "sub",
  "li", "b", "i", "u", "strong", "em", "strike", "code", "hr", "br", "div", "table", "thead", "tbody", "tr",
  "th", "td", "caption", "pre", "span", "details", "summary",
];
const ALLOWED_ATTR = ["href", "data-mx-color", "data-mx-bg-color", "color", "start", "colspan", "rowspan", "class", "title"];
// Links may go to the web, mail or Matrix (matrix: URIs, matrix.to).
const ALLOWED_URI = /^(?:https?:|mailto:|matrix:)/i;

let hooked = false;

function purifier(): typeof DOMPurify {
  if (!hooked) {
    hooked = true;
    DOMPurify.addHook("uponSanitizeElement", (node, data) => {
      // Reply fallbacks (<mx-reply>) repeat the quoted message: drop them.
      if (data.tagName === "mx-reply") (node as Element).remove?.();
    });
    DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      const el = node as Element;
      if (el.tagName === "A" && el.hasAttribute("href")) {
        el.setAttribute("target", "_blank");
        el.setAttribute("rel", "noreferrer noopener");
      }
      // Only code blocks' language classes survive.
      const cls = el.getAttribute?.("class");
      if (cls != null && !(el.tagName === "CODE" && /^language-[\w-]+$/.test(cls))) el.removeAttribute("class");
      // Colours must be colours, not CSS.
      for (const a of ["data-mx-color", "data-mx-bg-color", "color"]) {
        const v = el.getAttribute?.(a);
        if (v != null && !/^#[0-9a-fA-F]{6}$/.test(v)) el.removeAttribute(a);
      }
    });
  }
  return DOMPurify;
}

/** sanitiseHtml keeps the Matrix subset of HTML and drops the rest. */
export function sanitiseHtml(html: string): string {
  return purifier().sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOWED_URI_REGEXP: ALLOWED_URI,
    // The URI check is for href only; these hold numbers, colours, text.
    ADD_URI_SAFE_ATTR: ["start", "colspan", "rowspan", "title", "color", "data-mx-color", "data-mx-bg-color"],
    ADD_ATTR: ["target", "rel"],
    KEEP_CONTENT: true,
  }) as string;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/**
 * renderMarkdown turns what the user typed into the HTML of
 * formatted_body, or null when the text has no formatting (then the
 * message is sent as plain text only, as other clients do).
 */
export function renderMarkdown(body: string): string | null {
  body = body.trim();
  const html = sanitiseHtml(
    (marked.parse(body, { async: false, gfm: true, breaks: true }) as string).trim(),
  );
  const plain = escapeHtml(body).replace(/\n/g, "<br>");
  const unwrapped = html.replace(/^<p>([\s\S]*)<\/p>$/, "$1").replace(/<br\s*\/?>\n?/g, "<br>");
  if (unwrapped === plain) return null;
  return html;
}
