import { describe, expect, it } from "vitest";
import { catalogues, format, pickLanguage, t, setLanguage } from "./i18n.ts";

describe("pickLanguage", () => {
  it("follows the browser's first language that we have", () => {
    expect(pickLanguage(["fr-LU", "en"])).toBe("fr");
    expect(pickLanguage(["pt-PT", "de-CH", "fr"])).toBe("de");
    expect(pickLanguage(["lb-LU"])).toBe("lb");
    expect(pickLanguage(["ltz"])).toBe("lb");
    expect(pickLanguage(["en_GB"])).toBe("en");
  });
  it("falls back to English", () => {
    expect(pickLanguage([])).toBe("en");
    expect(pickLanguage(["pt", "nl"])).toBe("en");
  });
  it("prefers the user's stored choice, if we have it", () => {
    expect(pickLanguage(["fr"], "de")).toBe("de");
    expect(pickLanguage(["fr"], "xx")).toBe("fr");
    expect(pickLanguage(["fr"], null)).toBe("fr");
  });
});

describe("catalogues", () => {
  const keys = Object.keys(catalogues.en).sort();
  for (const [lang, cat] of Object.entries(catalogues)) {
    it(`${lang} has every key, each with the same placeholders and a non-empty text`, () => {
      expect(Object.keys(cat).sort()).toEqual(keys);
      for (const k of keys) {
        const text = (cat as Record<string, string>)[k];
        expect(text.trim(), `${lang} ${k}`).not.toBe("");
        const ph = (s: string) => (s.match(/\{\w+\}/g) ?? []).sort();
        expect(ph(text), `${lang} ${k}`).toEqual(ph((catalogues.en as Record<string, string>)[k]));
      }
    });
  }
});

describe("t and format", () => {
  it("fills placeholders and keeps unknown ones", () => {
    expect(format("{a} and {b}", { a: 1 })).toBe("1 and {b}");
  });
  it("switches language", () => {
    setLanguage("fr");
    expect(t("login.submit")).toBe("Se connecter");
    expect(document.documentElement.lang).toBe("fr");
    expect(localStorage.getItem("luxchat.lang")).toBe("fr");
    setLanguage("lb");
    expect(t("rooms.unread", { count: 3 })).toBe("3 net gelies");
    setLanguage("en");
    expect(t("login.title", { server: "chat.example.lu" })).toBe("Sign in to chat.example.lu");
  });
});
