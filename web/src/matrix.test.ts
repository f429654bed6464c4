import { describe, expect, it } from "vitest";
import { registrationFromFlows } from "./matrix.ts";

describe("registrationFromFlows", () => {
  it("offers sign-up when a flow needs only steps this client can do", () => {
    expect(registrationFromFlows([{ stages: ["m.login.dummy"] }])).toBe("open");
    expect(registrationFromFlows([{ stages: ["m.login.registration_token"] }])).toBe("token");
    expect(registrationFromFlows([{ stages: ["m.login.registration_token", "m.login.dummy"] }])).toBe("token");
    expect(registrationFromFlows([{ stages: ["m.login.recaptcha"] }, { stages: ["m.login.dummy"] }])).toBe("open");
  });
  it("hides it when registration is closed or needs steps it cannot do", () => {
    expect(registrationFromFlows(undefined)).toBe("closed");
    expect(registrationFromFlows([])).toBe("closed");
    expect(registrationFromFlows([{ stages: [] }])).toBe("closed");
    expect(registrationFromFlows([{ stages: ["m.login.email.identity"] }, { stages: ["m.login.sso"] }])).toBe("closed");
  });
});
