import { render } from "preact";
import { App } from "./app.tsx";
import { lang } from "./i18n.ts";
import { applyTheme, theme } from "./theme.ts";
import "./style.css";

applyTheme(theme.get());
document.documentElement.lang = lang.get();
render(<App />, document.getElementById("app")!);

// The service worker keeps the shell (index.html and the hashed assets)
// for offline starts; it never touches the Matrix API.
if (import.meta.env.PROD && "serviceWorker" in navigator) {
  navigator.serviceWorker.register("./sw.js", { scope: "./" }).catch(() => {});
}
