// The client's strings in English, French, German and Luxembourgish: the
// language comes from the browser's preferences unless the user picked
// one (kept in localStorage). No network: every catalogue is bundled.
import { signal } from "./signal.ts";
import en, { type Messages } from "./locales/en.ts";
import fr from "./locales/fr.ts";
import de from "./locales/de.ts";
import lb from "./locales/lb.ts";

export type Lang = "en" | "fr" | "de" | "lb";
export type Key = keyof Messages;

export const catalogues: Record<Lang, Messages> = { en, fr, de, lb };

/** Each language named in itself, for the language picker. */
export const languageNames: Record<Lang, string> = {
  en: "English",
  fr: "Français",
  de: "Deutsch",
  lb: "Lëtzebuergesch",
};

const STORAGE_KEY = "luxchat.lang";

/**
 * pickLanguage returns the language to show: the stored choice when it is
 * one we have, else the first browser preference whose primary subtag we
 * have ("fr-LU" → fr, "de-CH" → de; "ltz" is the ISO 639-2 code of
 * Luxembourgish), else English.
 */
export function pickLanguage(preferred: readonly string[], stored?: string | null): Lang {
  if (stored && stored in catalogues) return stored as Lang;
  for (const tag of preferred) {
    let primary = tag.toLowerCase().split(/[-_]/)[0];
    if (primary === "ltz") primary = "lb";
    if (primary in catalogues) return primary as Lang;
  }
  return "en";
}

/** format replaces {name} placeholders with vars' values. */
export function format(template: string, vars?: Record<string, string | number>): string {
  if (!vars) return template;
  return template.replace(/\{(\w+)\}/g, (m, name: string) => (name in vars ? String(vars[name]) : m));
}

function storedLanguage(): string | null {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

/** The current language; components re-render when it changes. */
export const lang = signal<Lang>(
  pickLanguage(typeof navigator === "undefined" ? [] : navigator.languages ?? [navigator.language], storedLanguage()),
);

export function setLanguage(l: Lang): void {
  try {
    localStorage.setItem(STORAGE_KEY, l);
  } catch {
    // private mode: the choice lasts for this page only
  }
  lang.set(l);
  document.documentElement.lang = l;
}

/** t translates key into the current language. */
export function t(key: Key, vars?: Record<string, string | number>): string {
  return format(catalogues[lang.get()][key] ?? en[key], vars);
}
