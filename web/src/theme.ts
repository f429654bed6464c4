// Light and dark themes: the system's preference until the user picks
// one, which localStorage keeps.
import { signal } from "./signal.ts";

export type Theme = "light" | "dark";
const KEY = "luxchat.theme";

function initial(): Theme {
  try {
    const s = localStorage.getItem(KEY);
    if (s === "light" || s === "dark") return s;
  } catch {
    // no storage
  }
  return typeof matchMedia !== "undefined" && matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export const theme = signal<Theme>(initial());

export function applyTheme(t: Theme): void {
  document.documentElement.dataset.theme = t;
}

export function setTheme(t: Theme): void {
  try {
    localStorage.setItem(KEY, t);
  } catch {
    // no storage
  }
  theme.set(t);
  applyTheme(t);
}
