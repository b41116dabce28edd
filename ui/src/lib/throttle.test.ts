import { describe, expect, it } from "vitest";
import { createThrottle } from "./throttle";

describe("createThrottle", () => {
  it("passes the first call, then one per interval", () => {
    let t = 1000;
    const th = createThrottle(500, () => t);
    expect(th.ready()).toBe(true);
    t = 1400;
    expect(th.ready()).toBe(false);
    t = 1500;
    expect(th.ready()).toBe(true);
    t = 1999;
    expect(th.ready()).toBe(false);
    t = 2000;
    expect(th.ready()).toBe(true);
  });
});
