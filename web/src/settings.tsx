import { languageNames, lang, setLanguage, t, type Lang } from "./i18n.ts";
import { useSignal } from "./hooks.ts";
import { setTheme, theme } from "./theme.ts";

/** Settings: the language and the theme, on the login page and in the room list. */
export function Settings({ onLogout }: { onLogout?: () => void }) {
  const l = useSignal(lang);
  const th = useSignal(theme);
  return (
    <div class="settings">
      <label>
        {t("menu.language")}{" "}
        <select value={l} onChange={(e) => setLanguage(e.currentTarget.value as Lang)}>
          {(Object.keys(languageNames) as Lang[]).map((k) => (
            <option value={k} key={k} lang={k}>
              {languageNames[k]}
            </option>
          ))}
        </select>
      </label>
      <button type="button" aria-pressed={th === "dark"} onClick={() => setTheme(th === "dark" ? "light" : "dark")}>
        {t("menu.theme")}: {th === "dark" ? t("menu.themeDark") : t("menu.themeLight")}
      </button>
      {onLogout && (
        <button type="button" class="danger" onClick={onLogout}>
          {t("menu.logout")}
        </button>
      )}
    </div>
  );
}
